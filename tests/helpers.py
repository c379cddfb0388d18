"""What the test modules share: the golden checkpoint's paths and tolerances, the sample corpus.

Import it as ``from helpers import ...`` (pytest puts tests/ on the path); fixtures stay in conftest.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "golden" / "tiny-v3"
SAMPLE_PASSAGES = Path(__file__).resolve().parents[1] / "examples" / "data" / "passages.jsonl"
SAMPLE_QUERIES = [
    "how often should sunscreen be reapplied?", "Wie kompostiert man zu Hause?", "茶", "tea ceremony history",
]

# Tolerances of tests/golden/README.md: normalised vectors, and token states / unnormalised means.
NORMALIZED = dict(atol=1e-5, rtol=0)
RAW = dict(atol=1e-4, rtol=1e-4)

# Each encode_*.npy golden file and the encode() arguments that reproduce it.
ENCODE_CASES = [
    ("encode_retrieval.query.npy", dict(task="retrieval.query"), NORMALIZED),
    ("encode_retrieval.passage.npy", dict(task="retrieval.passage"), NORMALIZED),
    ("encode_separation.npy", dict(task="separation"), NORMALIZED),
    ("encode_classification.npy", dict(task="classification"), NORMALIZED),
    ("encode_text-matching.npy", dict(task="text-matching"), NORMALIZED),
    ("encode_no_task.npy", dict(task=None), NORMALIZED),
    ("encode_text-matching_dim32.npy", dict(task="text-matching", dimensions=32), NORMALIZED),
    ("encode_retrieval.query_unnormalized.npy", dict(task="retrieval.query", normalize=False), RAW),
    ("encode_retrieval.passage_maxlen16.npy", dict(task="retrieval.passage", max_length=16), NORMALIZED),
]


def golden(name: str) -> np.ndarray:
    return np.load(GOLDEN / name)


def sample_passages(n: int) -> list[dict]:
    """The first ``n`` rows of the sample corpus (id, text, lang, topic, source)."""
    with open(SAMPLE_PASSAGES, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()][:n]


def bad_rows_corpus(folder: Path) -> tuple[list[str], list[str]]:
    """A folder of .jsonl files with one row of each kind ``jinav3 index`` skips (issue 28): a lone trailing
    surrogate escape, a ``::chunk:`` id, a NUL in an id, an integer past 64 bits, a repeated id, a row nested
    5,000 deep, each next to good rows. Returns (``file:line`` of the bad rows in corpus order, the ids indexed)."""
    folder.mkdir(parents=True)
    deep = '{"id": "deep", "text": "deep", "m": ' + "[" * 5000 + "]" * 5000 + "}"
    files = {
        "a.jsonl": ['{"id": "a1", "text": "Tea is grown in Yunnan."}', '{"id": "a2", "text": "tail \\udfff"}'],
        "b.jsonl": ['{"id": "b1", "text": "Composting needs air and moisture."}',
                    '{"id": "x::chunk:1", "text": "a reserved id"}', '{"id": "nul\\u0000", "text": "a NUL in its id"}',
                    '{"id": "big", "text": "a big number", "n": 18446744073709551616}',
                    '{"id": "a1", "text": "the id of a.jsonl:1 again"}'],
        "c.jsonl": [deep, '{"text": "no id, after the deep row"}'],
    }
    for name, lines in files.items():
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    bad = ["a.jsonl:2", "b.jsonl:2", "b.jsonl:3", "b.jsonl:4", "b.jsonl:5", "c.jsonl:1"]
    return bad, ["a1", "b1", "c.jsonl:2"]


def skipped_rows(stderr: str) -> list[str]:
    """The ``file:line`` (file name only) of each ``jinav3: warning: ...; skipped`` row in ``stderr``, in order."""
    return [re.match(r"jinav3: warning: (?:\S*/)?([^/\s]+?:\d+)[.:]", line)[1]  # type: ignore[index]
            for line in stderr.splitlines() if line.startswith("jinav3: warning: ") and line.endswith("; skipped")]


# Hybrid search (issue 25): one document holds the rare exact term "ZX-4410", several share "Akku".
HYBRID_DOCS = [
    {"id": "zx", "text": "Der ZX-4410 Akku hält lange.", "metadata": {"lang": "de"}},
    {"id": "garden", "text": "Der Akku im Garten ist leer.", "metadata": {"lang": "de"}},
    {"id": "dog", "text": "The dog plays in the garden.", "metadata": {"lang": "en"}},
    {"id": "cat", "text": "Die Katze schläft auf dem Sofa.", "metadata": {"lang": "de"}},
    {"id": "rain", "text": "Rain fills the old cistern.", "metadata": {"lang": "en"}},
]
HYBRID_TEXTS = ["Der ZX-4410 Akku hält zehn Stunden.", "Der Akku im Garten ist leer.", "The dog plays in the garden.",
                "Die Katze schläft auf dem Sofa.", "Rain fills the old cistern."]

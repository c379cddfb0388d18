"""What the test modules share: the golden checkpoint's paths and tolerances, the sample corpus.

Import it as ``from helpers import ...`` (pytest puts tests/ on the path); fixtures stay in conftest.py.
"""

from __future__ import annotations

import json
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

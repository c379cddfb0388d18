"""Shared fixtures: the tiny golden checkpoint (original layout) and encoders built from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN


@pytest.fixture(scope="session")
def golden_inputs() -> dict:
    return json.loads((GOLDEN / "inputs.json").read_text())


@pytest.fixture(scope="session")
def encoder():
    """The golden tiny model loaded from its original layout, on the CPU (shared: do not mutate)."""
    from jinav3 import Encoder

    return Encoder.from_pretrained(GOLDEN, device="cpu")


@pytest.fixture(scope="session")
def native_dir(encoder, tmp_path_factory) -> Path:
    """The golden model written in the transformers-native layout by save_pretrained."""
    return Path(encoder.save_pretrained(tmp_path_factory.mktemp("native") / "tiny-v3-native"))


@pytest.fixture(scope="session")
def native_encoder(native_dir):
    from jinav3 import Encoder

    return Encoder.from_pretrained(native_dir, device="cpu")

"""Shared fixtures: the tiny golden checkpoint (original layout) and encoders built from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "golden" / "tiny-v3"


def golden(name: str) -> np.ndarray:
    return np.load(GOLDEN / name)


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

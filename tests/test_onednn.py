"""fp32 linear layers through oneDNN (core/onednn.py): golden parity either way, whatever this CPU's vendor
picks by default, and the option's checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ENCODE_CASES, GOLDEN, NORMALIZED, golden

from jinav3 import Encoder, devices, onednn
from jinav3.errors import InvalidArgumentError

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this torch build has no oneDNN")


@pytest.fixture(scope="module", params=[True, False], ids=["onednn", "torch-default"])
def routed_encoder(request):
    return Encoder.from_pretrained(GOLDEN, device="cpu", onednn_linears=request.param)


@pytest.mark.parametrize("name,kwargs,tol", ENCODE_CASES, ids=[c[0] for c in ENCODE_CASES])
def test_golden_parity_either_way(routed_encoder, golden_inputs, name, kwargs, tol):
    np.testing.assert_allclose(routed_encoder.encode(golden_inputs["texts"], **kwargs), golden(name), **tol)


def test_task_corrections_and_late_chunking_run_through_it(routed_encoder, golden_inputs):
    enc = routed_encoder
    with enc.adapter("retrieval.passage"):  # the query below runs as corrections on the passage weights
        pass
    merges = enc.lora.merges
    query = enc.encode(golden_inputs["texts"][:2], task="retrieval.query")
    np.testing.assert_allclose(query, golden("encode_retrieval.query.npy")[:2], **NORMALIZED)
    assert enc.lora.merges == merges
    pieces = ["Berlin is the capital of Germany.", "It has 3.8 million inhabitants."]
    padded = enc.with_options(packed=False)
    np.testing.assert_allclose(enc.encode(pieces, late_chunking=True), padded.encode(pieces, late_chunking=True),
                               **NORMALIZED)


def test_the_layers_really_route_and_route_back():
    model = Encoder.from_pretrained(GOLDEN, device="cpu", onednn_linears=False).model
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert not onednn.routed(model)
    assert onednn.route_linears(model, True) == linears > 0 and onednn.routed(model)
    onednn.route_linears(model, False)
    assert not onednn.routed(model)
    assert all("forward" not in vars(m) for m in model.modules() if isinstance(m, torch.nn.Linear))


def test_the_default_follows_the_processor_and_dtype(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_vendor", lambda: "AuthenticAMD")
    assert onednn.decide(None, cpu, torch.float32, torch_compile=False) is True
    assert onednn.decide(None, cpu, torch.bfloat16, torch_compile=False) is False  # bf16 already uses oneDNN
    assert onednn.decide(None, cpu, torch.float32, torch_compile=True) is False
    assert onednn.decide(None, torch.device("cuda"), torch.float32, torch_compile=False) is False
    monkeypatch.setattr(devices, "cpu_vendor", lambda: "GenuineIntel")
    assert onednn.decide(None, cpu, torch.float32, torch_compile=False) is False
    assert Encoder.from_pretrained(GOLDEN, device="cpu").onednn_linears is False
    assert "MKL" in onednn.describe() and "onednn_linears=True" in onednn.describe()
    monkeypatch.setattr(devices, "cpu_vendor", lambda: "AuthenticAMD")
    assert onednn.describe().startswith("oneDNN")


def test_bad_choices_are_named_before_loading(monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before the option was checked")

    monkeypatch.setattr("jinav3.checkpoint.load", no_loading)
    for value, match in [("yes", "True or False"), (1, "True or False")]:
        with pytest.raises(InvalidArgumentError, match=f"^onednn_linears: .*{match}"):
            Encoder.from_pretrained(GOLDEN, device="cpu", onednn_linears=value)
    with pytest.raises(InvalidArgumentError, match="^onednn_linears: .*bfloat16"):
        Encoder.from_pretrained(GOLDEN, device="cpu", dtype="bfloat16", onednn_linears=True)
    with pytest.raises(InvalidArgumentError, match="^onednn_linears: .*torch_compile"):
        Encoder.from_pretrained(GOLDEN, device="cpu", torch_compile=True, onednn_linears=True)

"""The packed (padding-free) forward of jinav3.packing against the padded one and the golden outputs.

The Encoder runs packed by default on the CPU (``Encoder.packed``); these tests run the golden cases
through BOTH paths of one encoder, so the padded fallback (CUDA fp32, MPS, ``packed=False``) stays exact too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import ENCODE_CASES, GOLDEN, NORMALIZED, RAW, golden
from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

from jinav3 import packing
from jinav3.packing import (
    ATTENTION_NAME,
    forward_pooled_packed,
    forward_states_packed,
    pack,
    packing_supported,
    segment_mean,
    varlen_attention_forward,
    varlen_backend,
)
from jinav3.pooling import mean_pool

SPEC = json.loads((GOLDEN / "late_chunking.json").read_text())
LONG = SPEC["long"]



def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(params=[True, False], ids=["packed", "padded"])
def packed_encoder(encoder, monkeypatch, request):
    """The shared golden encoder's weights on one path (``with_options``: the shared one is untouched)."""
    return encoder.with_options(packed=request.param)


def test_packed_is_the_cpu_default(encoder):
    assert encoder.packed and packing.packing_supported("cpu")


@pytest.mark.parametrize("file,kwargs,tol", ENCODE_CASES, ids=[c[0] for c in ENCODE_CASES])
def test_packed_encode_matches_golden(packed_encoder, golden_inputs, file, kwargs, tol):
    vectors = packed_encoder.encode(golden_inputs["texts"], **kwargs)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, golden(file), **tol)
    assert packed_encoder.model.config._attn_implementation == "sdpa"  # put back after every pass


def test_packed_with_small_budgets_and_batches(packed_encoder, golden_inputs):
    small_budget = packed_encoder.with_options(max_tokens_per_batch=64)
    vectors = small_budget.encode(golden_inputs["texts"], task="separation", batch_size=3)
    np.testing.assert_allclose(vectors, golden("encode_separation.npy"), **NORMALIZED)


def test_packed_late_chunking_matches_golden(packed_encoder):
    vectors = packed_encoder.encode(SPEC["texts"], task="retrieval.passage", late_chunking=True)
    np.testing.assert_allclose(vectors, golden("late_chunking_normalized.npy"), **NORMALIZED)
    states = packed_encoder.token_states(LONG["input_ids"], task="retrieval.passage", window=64, overlap=16)
    np.testing.assert_allclose(states, golden("long_late_chunking_tokens.npy"), **RAW)


def test_packed_equals_padded_on_the_golden_model(encoder, golden_inputs):
    texts = golden_inputs["texts"] + [""]  # with the empty text: a 2-token row (<s> </s>)
    padded_encoder, packed_encoder = encoder.with_options(packed=False), encoder.with_options(packed=True)
    for max_length in (None, 5):  # all lengths, then every text cut to 5 tokens
        padded = padded_encoder.encode(texts, task="retrieval.passage", max_length=max_length, normalize=False)
        packed = packed_encoder.encode(texts, task="retrieval.passage", max_length=max_length, normalize=False)
        np.testing.assert_allclose(normalized(packed), normalized(padded), **NORMALIZED)


# ----------------------------------------------------------------------------------- a medium model
@pytest.fixture(scope="module")
def medium_model():
    """Random model of the medium benchmark shape (6 x 384, 6 heads, FFN 1536), small vocab."""
    torch.manual_seed(0)
    config = JinaEmbeddingsV3Config(vocab_size=3000, hidden_size=384, num_hidden_layers=6, num_attention_heads=6,
                                    intermediate_size=1536,
                                    rope_parameters={"rope_type": "default", "rope_theta": 20000.0})
    config._attn_implementation = "sdpa"
    model = JinaEmbeddingsV3Model(config).eval()
    with torch.no_grad():  # sharper attention than the default init, so that positions matter
        for layer in model.layers:
            layer.self_attn.q_proj.weight.mul_(4)
            layer.self_attn.k_proj.weight.mul_(4)
    return model


def random_ids(lengths, seed=0, vocab=3000):
    rng = np.random.default_rng(seed)
    return [[0] + rng.integers(3, vocab - 1, n - 2).tolist() + [2] for n in lengths]


def padded_pooled(model, ids):
    longest = max(map(len, ids))
    input_ids = torch.ones((len(ids), longest), dtype=torch.long)
    mask = torch.zeros((len(ids), longest), dtype=torch.long)
    for r, row in enumerate(ids):
        input_ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
    with torch.inference_mode():
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    return mean_pool(hidden, mask).numpy()


@pytest.mark.slow  # the medium random model
def test_packed_equals_padded_on_a_medium_model(medium_model):
    lengths = [3, 512, 120, 7, 260, 45, 120, 2, 333, 64]
    ids = random_ids(lengths)
    packed = forward_pooled_packed(medium_model, ids, "cpu")
    padded = padded_pooled(medium_model, ids)
    assert packed.shape == (len(ids), 384) and packed.dtype == np.float32
    np.testing.assert_allclose(normalized(packed), normalized(padded), **NORMALIZED)
    # order inside the pack does not matter, and one sequence alone gives the same vector
    reversed_ = forward_pooled_packed(medium_model, ids[::-1], "cpu")[::-1]
    np.testing.assert_allclose(normalized(reversed_), normalized(packed), **NORMALIZED)
    alone = forward_pooled_packed(medium_model, [ids[4]], "cpu")
    np.testing.assert_allclose(normalized(alone[0]), normalized(packed[4]), **NORMALIZED)


@pytest.mark.slow  # the medium random model
def test_packed_token_states_equal_unpadded_forwards(medium_model):
    ids = random_ids([40, 9, 130], seed=1)
    states = forward_states_packed(medium_model, ids, "cpu")
    for row, got in zip(ids, states, strict=True):
        with torch.inference_mode():
            want = medium_model(input_ids=torch.tensor([row])).last_hidden_state[0]
        assert got.shape == (len(row), 384) and got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), want.numpy(), **RAW)


@pytest.mark.slow  # the medium random model
def test_attention_stays_inside_each_sequence(medium_model):
    """Changing one sequence's tokens changes only that sequence's vector."""
    ids = random_ids([50, 60, 70], seed=2)
    before = forward_pooled_packed(medium_model, ids, "cpu")
    changed = [ids[0], ids[1][:1] + [7] * 58 + ids[1][-1:], ids[2]]
    after = forward_pooled_packed(medium_model, changed, "cpu")
    np.testing.assert_allclose(after[[0, 2]], before[[0, 2]], atol=1e-5, rtol=0)
    assert not np.allclose(after[1], before[1], atol=1e-3)


@pytest.mark.slow  # the medium random model
def test_registered_name_runs_padded_batches_too(medium_model):
    """A model switched to ATTENTION_NAME still masks padding (our mask function is SDPA's)."""
    ids = random_ids([30, 90, 12], seed=3)
    want = padded_pooled(medium_model, ids)
    packing.register()
    medium_model.config._attn_implementation = ATTENTION_NAME
    try:
        got = padded_pooled(medium_model, ids)
    finally:
        medium_model.config._attn_implementation = "sdpa"
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------- pieces
def test_pack_positions_restart_per_sequence():
    packed = pack([[5, 6, 7], [8], [9, 10]], "cpu")
    assert packed.input_ids.tolist() == [[5, 6, 7, 8, 9, 10]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 0, 1]]
    assert packed.cu_seq_lens.tolist() == [0, 3, 4, 6] and packed.cu_seq_lens.dtype == torch.int32
    assert packed.max_length == 3 and packed.lengths == [3, 1, 2]
    with pytest.raises(ValueError):
        pack([[1], []], "cpu")


def test_segment_mean():
    hidden = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    packed = pack([[1, 2, 3], [4], [5, 6]], "cpu")
    assert packed.segments.tolist() == [0, 0, 0, 1, 2, 2] and packed.counts.tolist() == [3, 1, 2]
    means = segment_mean(hidden, packed.segments, packed.counts)
    np.testing.assert_allclose(means.numpy(), [[2, 3], [6, 7], [9, 10]])


def test_backend_choice():
    assert varlen_backend("cpu") == "sdpa_loop"
    assert varlen_backend("cpu", torch.bfloat16) == "sdpa_loop"
    assert packing_supported("cpu")
    assert not packing_supported("cuda", torch.float32)  # no varlen kernel in fp32: padded batches stay


def _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, scale=None):
    """What a varlen kernel computes, (T, heads, d) in and out, for checking our marshalling."""
    out = torch.empty_like(q)
    bounds = cu_q.tolist()
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        out[a:b] = torch.nn.functional.scaled_dot_product_attention(
            q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1), scale=scale).transpose(0, 1)
    return out


@pytest.mark.slow  # the medium random model
@pytest.mark.parametrize("takes_scale", [True, False])
def test_torch_varlen_marshalling(monkeypatch, takes_scale, medium_model):
    """The CUDA branch (torch's varlen_attn, with or without ``scale=``) driven on the CPU through a
    reference kernel: layouts, cu_seq_lens dtype and the model's scaling must come out right."""
    calls = []

    def fake(q, k, v, cu_q, cu_k, max_q, max_k, **kw):
        calls.append((q.shape, cu_q.dtype, max_q, kw))
        assert q.is_contiguous() and q.dim() == 3
        return _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, kw.get("scale"))

    monkeypatch.setattr(packing, "varlen_backend", lambda device, dtype=None: "torch_varlen")
    monkeypatch.setattr(packing, "_torch_varlen", lambda: (fake, takes_scale))
    ids = random_ids([20, 75, 5], seed=4)
    got = forward_pooled_packed(medium_model, ids, "cpu")
    monkeypatch.undo()
    want = forward_pooled_packed(medium_model, ids, "cpu")
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert len(calls) == 6 and calls[0][1] == torch.int32 and calls[0][2] == 75
    assert ("scale" in calls[0][3]) == takes_scale


@pytest.mark.slow  # the medium random model
def test_without_cu_seq_lens_it_is_sdpa(medium_model):
    q, k, v = (torch.randn(2, 6, 10, 64) for _ in range(3))
    mask = torch.ones(2, 1, 10, 10, dtype=torch.bool)
    mask[1, :, :, 7:] = False
    out, _ = varlen_attention_forward(medium_model.layers[0].self_attn, q, k, v, mask, scaling=0.125)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.125).transpose(1, 2)
    torch.testing.assert_close(out, want)

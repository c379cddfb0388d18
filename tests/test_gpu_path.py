"""The CUDA path's device-independent parts, checked on the CPU (issue 26).

No GPU runs here. What a GPU run depends on and the CPU can show: task switches that read nothing from
host memory (a model on the ``meta`` device stands for the accelerator: any host tensor in a switch
shows up, and a read back from it fails), late chunking that reads back (spans, H) sums only, packed
forwards that never read the sequence lengths back, padded batches of equal rows that build no mask,
``benchmarks.run --compile`` telling the Encoder, and torch's varlen_attn in both of its signatures
(driven through the stand-ins of benchmarks/varlen_standin.py, which check what the CUDA kernel checks).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import GOLDEN, NORMALIZED, RAW, golden
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks import varlen_standin
from jinav3 import Encoder, packing, pipeline
from jinav3 import checkpoint as ckpt
from jinav3.lora import MergedTaskLoRA

SPEC = json.loads((GOLDEN / "late_chunking.json").read_text())


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


class DevicesTouched(TorchDispatchMode):
    """Every device that an operator's tensor arguments live on, while the block runs."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        for value in [*args, *(kwargs or {}).values()]:
            if isinstance(value, torch.Tensor):
                self.devices.add(value.device.type)
        return func(*args, **(kwargs or {}))


# ------------------------------------------------------------------------------ 1. task switches
def test_task_switch_touches_only_the_device():
    """Pristine weights and factors live where the model runs: a switch reads no host tensor."""
    loaded = ckpt.load(GOLDEN, torch.float32)
    lora = MergedTaskLoRA(loaded.model, loaded.adapters, device="meta")  # before the move, as the Encoder does
    loaded.model.to("meta")
    assert {t.device.type for t in lora.pristine.values()} == {"meta"}
    with DevicesTouched() as touched:
        for adapter in ("retrieval_query", "retrieval_passage", None, "text_matching"):
            lora.activate(adapter)
    assert touched.devices == {"meta"} and lora.merges == 4


def test_encoder_copies_the_pristine_weights_before_the_move():
    """Taken after ``model.to(device)``, the pristine copy was read back from the device; from a model
    on ``meta`` nothing can be read back, so the Encoder builds only if it copies before the move."""
    loaded = ckpt.load(GOLDEN, torch.float32)
    host_weights = {name: p.detach().clone() for name, p in loaded.model.named_parameters()}
    encoder = Encoder(loaded, torch.device("meta"))
    assert {t.device.type for t in encoder.lora.pristine.values()} == {"meta"}
    assert next(encoder.model.parameters()).device.type == "meta"
    cpu = Encoder(ckpt.load(GOLDEN, torch.float32), torch.device("cpu"))
    for path, pristine in cpu.lora.pristine.items():  # a copy of the loaded weights, never an alias
        weight = cpu.model.get_submodule(path).weight
        assert pristine.data_ptr() != weight.data_ptr()
        assert torch.equal(pristine, host_weights[f"{path}.weight"])


def test_switching_back_and_forth_restores_identical_weights():
    encoder = Encoder.from_pretrained(GOLDEN, device="cpu")
    layer = encoder.model.get_submodule(next(iter(encoder.lora.merged)))
    encoder.lora.activate("retrieval_query")
    query = layer.weight.detach().clone()
    for adapter in ("retrieval_passage", None, "separation", "retrieval_query"):
        encoder.lora.activate(adapter)
    assert torch.equal(layer.weight, query)
    encoder.lora.activate(None)
    assert torch.equal(layer.weight, encoder.lora.pristine[next(iter(encoder.lora.merged))])


# ------------------------------------------------------------------------------ 2. late chunking on the device
def test_span_sums_add_each_pair():
    hidden = torch.randn(10, 4).to(torch.bfloat16)  # bf16 states, float32 sums
    tokens = np.array([0, 1, 2, 2, 5, 9])  # token 2 in two spans (a chunk too small for a token of its own)
    spans = np.array([0, 0, 0, 1, 2, 2])
    got = packing.span_sums(hidden, tokens, spans, 3)
    h = hidden.float()
    want = torch.stack([h[[0, 1, 2]].sum(0), h[2], h[[5, 9]].sum(0)])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_late_chunking_reads_back_span_sums_only(encoder, monkeypatch, packed):
    """Windows of 64 tokens over the golden long document (302 tokens) in batches of at most 64 tokens:
    each batch reads back the sums of the spans it touched (m, H), never token states; the vectors are
    the golden ones."""
    long = SPEC["long"]
    document = long["full_input"][len(SPEC["instruction"]):]
    shapes: list[tuple[int, ...]] = []
    put = pipeline.LaggedReadback.put

    def spy(self, rows, vectors):
        shapes.append(tuple(vectors.shape))
        return put(self, rows, vectors)

    monkeypatch.setattr(pipeline.LaggedReadback, "put", spy)
    small = encoder.with_options(packed=packed, max_tokens_per_batch=64)
    chunks = small.late_chunk(document, task="retrieval.passage", chunker="tokens", chunk_size=long["chunk_tokens"],
                              window=long["macro_chunk_size"], overlap=long["overlap"], normalize=False)
    np.testing.assert_allclose(np.stack([c.embedding for c in chunks]), golden("long_late_chunking.npy"), **RAW)
    assert len(shapes) == len(long["windows"])  # one batch per window, each read back on its own
    assert all(h == small.hidden_size and m <= 3 for m, h in shapes)  # a 64-token window touches <= 3 chunks
    assert sum(m for m, _ in shapes) < long["n_tokens"] / 10


# ------------------------------------------------------------------------------ 3. no lengths read back
def test_packed_forward_reads_no_lengths_back(encoder, monkeypatch):
    """The per-sequence attention loop takes the host's bounds: no ``tolist``/``item`` in a packed
    forward (on CUDA each one is a device wait, 24 per forward at real size). Without them (a bare
    model call) it reads ``cu_seq_lens`` back once per layer, which shows the count works."""
    ids = [[0, 5, 9, 2], [0, 7, 2], [0, 11, 12, 13, 14, 2]]
    want = packing.forward_pooled_packed(encoder.model, ids, "cpu")
    reads: list[str] = []
    tolist, item = torch.Tensor.tolist, torch.Tensor.item

    def spy_tolist(self):
        reads.append("tolist")
        return tolist(self)

    def spy_item(self):
        reads.append("item")
        return item(self)

    monkeypatch.setattr(torch.Tensor, "tolist", spy_tolist)
    monkeypatch.setattr(torch.Tensor, "item", spy_item)
    got = packing.pooled_packed(encoder.model, ids, "cpu")
    assert reads == []
    np.testing.assert_array_equal(got.numpy(), want)
    packed = packing.pack(ids, "cpu")
    with torch.inference_mode(), packing.attention_implementation(encoder.model, packing.register()):
        encoder.model(**packed.model_kwargs())
    assert reads == ["tolist"] * encoder.model.config.num_hidden_layers


# ------------------------------------------------------------------------------ 4. no mask for equal rows
def test_padded_batches_of_equal_rows_get_no_mask(encoder):
    padded = encoder.with_options(packed=False)
    masks: list[object] = []

    def record(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        masks.append(None if mask is None else tuple(mask.shape))

    hook = padded.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        same = padded.encode(["alpha beta gamma", "alpha beta gamma"], task=None)
        mixed = padded.encode(["alpha beta gamma", "alpha"], task=None)
    finally:
        hook.remove()
    assert masks[0] is None and masks[1] is not None and len(masks) == 2
    want = encoder.encode(["alpha beta gamma", "alpha beta gamma", "alpha"], task=None)  # packed: no padding
    np.testing.assert_allclose(np.concatenate([same, mixed[1:]]), want, **NORMALIZED)


# ------------------------------------------------------------------------------ 5. run.py --compile
def test_benchmark_compile_flag_reaches_the_encoder(monkeypatch, tmp_path):
    from benchmarks import run

    seen: list[dict] = []
    load = Encoder.from_pretrained.__func__  # type: ignore[attr-defined]

    def spy(cls, *args, **kwargs):
        if "torch_compile" in kwargs:  # the benchmark's own load (building the checkpoint passes none)
            seen.append(kwargs)
            raise RuntimeError("stop here: the load's arguments are what this test checks")
        return load(cls, *args, **kwargs)

    monkeypatch.setattr(Encoder, "from_pretrained", classmethod(spy))
    report = run.main(["--size", "tiny", "--device", "cpu", "--ways", "jinav3-packed", "--compile", "--no-peak",
                       "--workdir", str(tmp_path)])
    assert seen and seen[0]["torch_compile"] is True
    assert "stop here" in report["errors"]["load jinav3"]


# ------------------------------------------------------------------------------ 6. torch's varlen_attn
def test_varlen_signature_tells_torch_2_10_from_2_12():
    assert packing.varlen_takes_scale(varlen_standin.varlen_attn_2_10) is False
    assert packing.varlen_takes_scale(varlen_standin.varlen_attn_2_12) is True
    assert packing.varlen_takes_scale(len) is False  # no signature: the oldest form


@pytest.mark.parametrize("signature", ["2.10", "2.12"])
@pytest.mark.parametrize("scaling", [0.25, 0.4])  # 1/sqrt(16) (the model's), and another
def test_varlen_attention_through_both_signatures(signature, scaling):
    """The attention function through each stand-in: (1, heads, T, d) bf16 in, the per-sequence SDPA
    out; on 2.10 (no ``scale``) another scaling is folded into q."""
    torch.manual_seed(0)
    lengths = [1, 2, 37]
    q, k, v = (torch.randn(1, 4, sum(lengths), 16).to(torch.bfloat16) for _ in range(3))
    packed = packing.pack([[1] * n for n in lengths], "cpu")
    varlen_standin.install(signature)
    try:
        assert packing.varlen_backend("cpu", torch.bfloat16) == "torch_varlen"
        assert packing.varlen_backend("cpu", torch.float32) == "sdpa_loop"
        out, _ = packing.varlen_attention_forward(None, q, k, v, None, scaling=scaling,
                                                  cu_seq_lens_q=packed.cu_seq_lens, max_length_q=packed.max_length)
    finally:
        packing.use_varlen_stand_in(None)
    want = packing._sdpa_loop(q[0].float(), k[0].float(), v[0].float(), packed.bounds, scaling)
    assert out.shape == (1, sum(lengths), 4, 16) and out.dtype == torch.bfloat16
    torch.testing.assert_close(out[0].float(), want, atol=0.03, rtol=0.02)


def test_stand_in_refuses_what_the_kernel_refuses():
    q = torch.randn(5, 2, 16)
    cu = torch.tensor([0, 2, 5], dtype=torch.int32)
    with pytest.raises(ValueError, match="fp16 and bf16"):
        varlen_standin.varlen_attn_2_12(q, q, q, cu, cu, 3, 3)
    h = q.to(torch.bfloat16)
    with pytest.raises(ValueError, match="int32"):
        varlen_standin.varlen_attn_2_12(h, h, h, cu.long(), cu.long(), 3, 3)
    with pytest.raises(ValueError, match="maximum length"):
        varlen_standin.varlen_attn_2_10(h, h, h, cu, cu, 2, 2)
    with pytest.raises(ValueError, match="multiple of 8"):
        odd = torch.randn(5, 2, 12).to(torch.bfloat16)
        varlen_standin.varlen_attn_2_12(odd, odd, odd, cu, cu, 3, 3)


def test_cuda_backend_needs_sm80(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (7, 5))
    monkeypatch.setattr(packing, "_flash_attn_varlen", lambda: None)
    packing._sm80_or_newer.cache_clear()
    try:
        assert packing.varlen_backend("cuda:0", torch.bfloat16) == "sdpa_loop"
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (9, 0))
        packing._sm80_or_newer.cache_clear()
        assert packing.varlen_backend("cuda:0", torch.bfloat16) == "torch_varlen"
        assert packing.varlen_backend("cuda:0", torch.float32) == "sdpa_loop"
    finally:
        packing._sm80_or_newer.cache_clear()


@pytest.mark.parametrize("signature", ["2.10", "2.12"])
def test_bf16_encoder_through_the_varlen_path_matches_golden(signature):
    """The whole Encoder in bf16 on the CUDA branch (stand-in kernel): encode, a correction batch of
    another task, and late chunking stay within cosine 0.999 of the float32 golden vectors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bf16 on a CPU without bf16 units: slow, not wrong
        bf16 = Encoder.from_pretrained(GOLDEN, device="cpu", dtype="bfloat16")
    texts = json.loads((GOLDEN / "inputs.json").read_text())["texts"]
    varlen_standin.install(signature)
    try:
        passages = bf16.encode(texts, task="retrieval.passage")
        merges = bf16.lora.merges
        queries = bf16.encode(texts[:3], task="retrieval.query")  # a few tokens: corrected, not re-merged
        assert bf16.lora.merges == merges
        late = bf16.encode(SPEC["texts"], task="retrieval.passage", late_chunking=True)
    finally:
        packing.use_varlen_stand_in(None)
    assert cosines(passages, golden("encode_retrieval.passage.npy")).min() > 0.999
    assert cosines(queries, golden("encode_retrieval.query.npy")[:3]).min() > 0.999
    assert cosines(late, golden("late_chunking_normalized.npy")).min() > 0.999


def test_wheel_names_and_the_install_selection(tmp_path, monkeypatch):
    """gpu_check installs only the wheels whose distribution the machine lacks (nothing it has is shadowed)."""
    from benchmarks import gpu_check

    assert gpu_check.distribution(Path("pydantic_core-2.50.5-cp312-cp312-manylinux_2_17_x86_64.whl")) == "pydantic-core"
    assert gpu_check.distribution(Path("prometheus_client-0.26.0-py3-none-any.whl")) == "prometheus-client"
    assert gpu_check.installed("numpy") and not gpu_check.installed("surely-not-a-distribution")
    with pytest.raises(FileNotFoundError, match="--prepare"):
        gpu_check.install_wheels(tmp_path, dry_run=False)

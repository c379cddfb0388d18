"""Packed (padding-free) forward passes: many sequences in ONE row, attention kept inside each one.

A batch of token-id lists becomes a single row of ``total_tokens`` ids. Every linear layer, LayerNorm
and GELU then runs on real tokens only (no padding at all), and attention is confined to each
sequence by a variable-length ("varlen") attention function registered in transformers'
``AttentionInterface`` under :data:`ATTENTION_NAME`:

    model(input_ids=(1, T), position_ids=(1, T) restarting at 0 for every sequence  (rotary),
          cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=m, max_length_k=m)

``JinaEmbeddingsV3Model.forward`` hands these keyword arguments through every layer to the attention
function untouched. With ``attention_mask=None`` and an attention name that has no mask function,
``create_bidirectional_mask`` returns None, so no (T, T) mask is ever built. We DO register the SDPA
mask function under our name as well, so that a model switched to :data:`ATTENTION_NAME` still runs
ordinary padded batches correctly: without ``cu_seq_lens_q`` our function is plain SDPA.

Kernels, first that applies:
  * CUDA + fp16/bf16 on sm80 or newer: flash-attn's ``flash_attn_varlen_func`` when installed, else
    torch's ``torch.nn.attention.varlen.varlen_attn`` (torch >= 2.10; FlashAttention-2 inside torch).
    Its signature changed: torch 2.10 takes ``is_causal`` and no ``scale``, torch 2.12 a keyword-only
    ``scale`` and ``window_size``; :func:`varlen_takes_scale` reads which one this torch has.
  * anything else (CPU, fp32): SDPA per sequence on slices of the packed row ("sdpa_loop"). Exact;
    on the CPU attention is a small share of the work for passages and the loop's overhead is small
    next to it. Flex attention with a document mask needs a new block mask for every batch and
    recompiles while totals change, so it did not pay (measurements: benchmarks/RESULTS.md).

Pooling is a segment mean (``index_add_``) over each sequence's tokens, ``<s>``/``</s>`` included,
exactly what ``mean_pool`` computes on padded batches; late chunking sums token spans the same way
(:func:`span_sums`), so only (spans, H) ever leaves the device.

Nothing in a packed forward makes the host wait for the device: ids, positions and lengths are built
on the host and sent pinned and non-blocking, and the per-sequence loop reads the sequence bounds the
host already has (:func:`host_bounds`) instead of reading ``cu_seq_lens`` back once per layer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from .devices import to_device

if TYPE_CHECKING:
    from transformers import JinaEmbeddingsV3Model, PreTrainedModel

ATTENTION_NAME = "jinav3_varlen"


# --------------------------------------------------------------------------------------------- kernels
@lru_cache(maxsize=1)
def _flash_attn_varlen():
    try:
        from flash_attn import flash_attn_varlen_func
    except Exception:  # not installed, or built for another torch/CUDA
        return None
    return flash_attn_varlen_func


def varlen_takes_scale(varlen_attn: Callable[..., Any]) -> bool:
    """Whether this ``varlen_attn`` takes ``scale=``, read from its signature: torch 2.10 has
    ``(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None)`` (scale fixed at
    1/sqrt(d)); torch 2.12 ``(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None,
    scale=None, window_size=(-1, -1), ...)``. Both take the seven leading arguments positionally and
    default to full (non-causal) attention, so ``scale`` is the one difference that matters here."""
    try:
        parameters = inspect.signature(varlen_attn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: assume the oldest form
        return False
    return "scale" in parameters


@lru_cache(maxsize=1)
def _torch_varlen() -> tuple[Callable[..., Any] | None, bool]:
    """torch's varlen_attn (None before torch 2.10) and whether it takes ``scale=``."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except Exception:
        return None, False
    return varlen_attn, varlen_takes_scale(varlen_attn)


# device type -> a stand-in for torch's varlen_attn (benchmarks/varlen_standin.py): the dry run of the
# GPU check drives the CUDA branch on the CPU with it. Empty in normal use.
_STAND_INS: dict[str, Callable[..., Any]] = {}


def use_varlen_stand_in(varlen_attn: Callable[..., Any] | None, device_type: str = "cpu") -> None:
    """Route packed fp16/bf16 attention on ``device_type`` through ``varlen_attn`` (a function with
    torch's varlen_attn signature), or stop doing so (None). For rehearsing the CUDA path on a CPU."""
    if varlen_attn is None:
        _STAND_INS.pop(device_type, None)
    else:
        _STAND_INS[device_type] = varlen_attn


def _varlen_kernel(device_type: str) -> tuple[Callable[..., Any] | None, bool]:
    stand_in = _STAND_INS.get(device_type)
    return (stand_in, varlen_takes_scale(stand_in)) if stand_in is not None else _torch_varlen()


@lru_cache(maxsize=16)
def _sm80_or_newer(index: int) -> bool:
    """FlashAttention-2 kernels (flash-attn's and torch's varlen_attn) need Ampere (sm80) or newer."""
    return torch.cuda.get_device_capability(index) >= (8, 0)


def varlen_backend(device: torch.device | str, dtype: torch.dtype = torch.bfloat16) -> str:
    """Which kernel the packed path uses on ``device`` for activations of ``dtype``:
    ``"flash_attn"``, ``"torch_varlen"`` (both CUDA sm80+, fp16/bf16 only) or ``"sdpa_loop"``."""
    device = torch.device(device)
    if dtype not in (torch.float16, torch.bfloat16):
        return "sdpa_loop"
    if device.type in _STAND_INS:
        return "torch_varlen"
    if device.type == "cuda" and _sm80_or_newer(torch.cuda.current_device() if device.index is None else device.index):
        if _flash_attn_varlen() is not None:
            return "flash_attn"
        if _torch_varlen()[0] is not None:
            return "torch_varlen"
    return "sdpa_loop"


def packing_supported(device: torch.device | str, dtype: torch.dtype = torch.float32) -> bool:
    """True where the packed path measured faster than padded batches and should be the default:
    CUDA with a varlen kernel (fp16/bf16), and the CPU (SDPA loop; benchmarks/RESULTS.md).
    Elsewhere (CUDA fp32, MPS) ``forward_pooled_packed`` still works, exactly, but is not known to pay."""
    device = torch.device(device)
    return device.type == "cpu" or varlen_backend(device, dtype) != "sdpa_loop"


# The bounds of the packed row's sequences as host ints, set around one packed forward (see
# host_bounds): the per-sequence loop needs them as Python ints in every layer, and reading them from
# the device tensor would make the host wait for the device 24 times per forward on CUDA.
_HOST_BOUNDS: ContextVar[Sequence[int] | None] = ContextVar("jinav3_host_bounds", default=None)


@contextmanager
def host_bounds(bounds: Sequence[int]) -> Iterator[None]:
    """Hand the attention function the cumulative lengths the host already has (``[0, l0, l0+l1, ...]``).
    A context variable rather than a model keyword: keywords pass through compiled layers, which would
    guard on every list and recompile; the attention function itself runs eagerly and reads it here."""
    token = _HOST_BOUNDS.set(bounds)
    try:
        yield
    finally:
        _HOST_BOUNDS.reset(token)


def _bounds(cu_seq_lens: torch.Tensor) -> Sequence[int]:
    """The host's copy of ``cu_seq_lens`` when it matches (same count), else read back (a device wait)."""
    bounds = _HOST_BOUNDS.get()
    if bounds is not None and len(bounds) == cu_seq_lens.shape[0]:
        return bounds
    return cu_seq_lens.tolist()


def _sdpa_loop(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bounds: Sequence[int], scale: float | None
) -> torch.Tensor:
    """q/k/v (heads, T, d) -> (T, heads, d): plain SDPA on each sequence's slice."""
    out = torch.empty((q.shape[1], q.shape[0], q.shape[2]), dtype=q.dtype, device=q.device)
    view = out.transpose(0, 1)  # (heads, T, d) view to write into
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):  # consecutive bounds: (start, end) of each sequence
        if b > a:
            # 4-D inputs: CPU SDPA takes its fused (flash) kernel only for (batch, heads, S, d)
            attended = F.scaled_dot_product_attention(q[None, :, a:b], k[None, :, a:b], v[None, :, a:b], scale=scale)
            view[:, a:b] = attended[0]
    return out


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    max_length_q: int | None = None,
    max_length_k: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: query/key/value (1, heads, T, d) of a packed row ->
    (1, T, heads, d). Without ``cu_seq_lens_q`` it is transformers' SDPA (padded batches)."""
    if cu_seq_lens_q is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if query.shape[0] != 1:
        raise ValueError(f"packed attention expects one packed row, got a batch of {query.shape[0]}")
    cu_k = cu_seq_lens_q if cu_seq_lens_k is None else cu_seq_lens_k
    backend = varlen_backend(query.device, query.dtype)
    if backend == "sdpa_loop":
        out = _sdpa_loop(query[0], key[0], value[0], _bounds(cu_seq_lens_q), scaling)
        return out.unsqueeze(0), None
    if max_length_q is None:  # the callers here always pass it: this reads the device
        bounds = _bounds(cu_seq_lens_q)
        max_length_q = max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    max_q = int(max_length_q)
    max_k = int(max_length_k) if max_length_k is not None else max_q
    # (1, heads, T, d) -> (T, heads, d); after rotary these are usually already laid out (T, heads, d)
    q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))
    cu_q, cu_k = cu_seq_lens_q.to(torch.int32), cu_k.to(torch.int32)
    if backend == "flash_attn":
        flash_attn_varlen_func = _flash_attn_varlen()
        out = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.0, softmax_scale=scaling,
                                     causal=False)
    else:
        varlen_attn, takes_scale = _varlen_kernel(query.device.type)
        if varlen_attn is None:
            raise RuntimeError("packed attention: torch.nn.attention.varlen is not available in this torch")
        if takes_scale:  # torch 2.12 and later
            out = varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, scale=scaling)
        else:  # torch 2.10: the scale is fixed at 1/sqrt(d), the model's own; any other goes into q
            if scaling is not None and abs(scaling - q.shape[-1] ** -0.5) > 1e-12:
                q = q * (scaling * q.shape[-1] ** 0.5)
            out = varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k)
    return out.unsqueeze(0), None


@lru_cache(maxsize=1)
def register() -> str:
    """Register :data:`ATTENTION_NAME` with transformers (attention function + SDPA's mask function)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    # stays eager inside a compiled layer (see compile_layers): no recompiles per length. Wrapped here, not
    # with a decorator, because torch.compiler.disable imports torch._dynamo (a second at import time).
    AttentionInterface.register(ATTENTION_NAME, torch.compiler.disable(varlen_attention_forward))
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME


@contextmanager
def attention_implementation(model: PreTrainedModel, name: str) -> Iterator[None]:
    """Run ``model`` with another registered attention function, then put the old one back."""
    config = model.config
    previous = config._attn_implementation
    if previous == name:
        yield
        return
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = previous


def compile_layers(model: JinaEmbeddingsV3Model, dynamic: bool = True) -> None:
    """``torch.compile`` every encoder layer in place (dynamic shapes: one graph for all packed
    lengths), fusing bias + GELU, rotary and residual + LayerNorm; the attention function itself stays
    eager. It pays only after seconds of compilation, so it is opt-in (measured gains:
    benchmarks/RESULTS.md; on CUDA the elementwise share is larger: benchmarks/gpu_check.sh)."""
    for layer in model.layers:
        layer.compile(dynamic=dynamic)


# --------------------------------------------------------------------------------------------- packing
@dataclass
class Packed:
    """One packed row of n sequences, T tokens in all, everything already on the device:
    ids and positions (1, T), cumulative lengths (n + 1,) int32, the sequence of every token (T,)
    and the lengths (n,) float32 for pooling; and on the host the longest length and the cumulative
    lengths as ints (``bounds``: ``[0, l0, l0 + l1, ..., T]``)."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    cu_seq_lens: torch.Tensor
    segments: torch.Tensor
    counts: torch.Tensor
    max_length: int
    bounds: list[int]

    @property
    def lengths(self) -> list[int]:
        return [b - a for a, b in zip(self.bounds[:-1], self.bounds[1:], strict=True)]

    def model_kwargs(self) -> dict:
        return dict(
            input_ids=self.input_ids,
            position_ids=self.position_ids,
            cu_seq_lens_q=self.cu_seq_lens,
            cu_seq_lens_k=self.cu_seq_lens,
            max_length_q=self.max_length,
            max_length_k=self.max_length,
        )


def pack(ids: Sequence[Sequence[int]], device: torch.device | str) -> Packed:
    """Concatenate token-id lists into one row; positions restart at 0 for every sequence.

    Everything the forward pass and the pooling need is computed here, on the host, and sent in one
    go (pinned, non-blocking on CUDA): a tensor built on the device from a Python list later would
    make the host wait for the device, and the next batch could not be queued behind this one."""
    lengths = [len(row) for row in ids]
    if not lengths or min(lengths) < 1:
        raise ValueError("pack: every sequence needs at least one token")
    flat = np.fromiter((t for row in ids for t in row), dtype=np.int64, count=sum(lengths))
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    segments = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)  # the sequence of each token
    positions = np.arange(len(flat), dtype=np.int64) - cu[:-1][segments]  # minus its sequence's start
    counts = np.asarray(lengths, dtype=np.float32)

    def put(array: np.ndarray) -> torch.Tensor:
        return to_device(torch.from_numpy(array), device)

    return Packed(put(flat)[None], put(positions)[None], put(cu), put(segments), put(counts), max(lengths),
                  cu.tolist())


def segment_mean(hidden: torch.Tensor, segments: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(T, H) token states of packed sequences, the sequence of each token (T,) and each sequence's
    length (n,) -> (n, H) float32 means, one per sequence (``<s>``/``</s>`` included)."""
    sums = torch.zeros((counts.shape[0], hidden.shape[-1]), dtype=torch.float32, device=hidden.device)
    sums.index_add_(0, segments, hidden.to(torch.float32))
    return sums / counts.unsqueeze(1)


def span_sums(hidden: torch.Tensor, tokens: np.ndarray, spans: np.ndarray, n_spans: int) -> torch.Tensor:
    """Late chunking's pooling on the device: (N, H) token states, and for each (token, span) pair to
    add (P pairs: ``tokens`` (P,) rows of ``hidden``, ``spans`` (P,) span ids below ``n_spans``) ->
    (n_spans, H) float32 sums, left on the device and not waited for. Only these sums travel back to
    the host (4 KB per span at H 1024), not the token states (4 KB per token)."""
    rows = to_device(torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)), hidden.device)
    ids = to_device(torch.from_numpy(np.ascontiguousarray(spans, dtype=np.int64)), hidden.device)
    sums = torch.zeros((n_spans, hidden.shape[-1]), dtype=torch.float32, device=hidden.device)
    return sums.index_add_(0, ids, hidden.index_select(0, rows).to(torch.float32))


def _forward_packed(model: PreTrainedModel, packed: Packed) -> torch.Tensor:
    """(T, H) token states of a packed row, with the model's active weights (merged task adapter)."""
    with attention_implementation(model, register()), host_bounds(packed.bounds):
        return model(**packed.model_kwargs()).last_hidden_state[0]


@torch.inference_mode()
def forward_tokens_packed(
    model: PreTrainedModel, ids: Sequence[Sequence[int]], device: torch.device | str
) -> tuple[torch.Tensor, list[int]]:
    """Token states (T, H) of all sequences, packed, left on the device, and where each sequence
    starts in them (host ints: row i is ``states[starts[i] : starts[i] + len(ids[i])]``)."""
    packed = pack(ids, device)
    return _forward_packed(model, packed), packed.bounds[:-1]


@torch.inference_mode()
def forward_states_packed(
    model: PreTrainedModel, ids: Sequence[Sequence[int]], device: torch.device | str
) -> list[torch.Tensor]:
    """Token states of each sequence, float32 on the CPU, ``[(len(ids[i]), H), ...]`` (a blocking read
    of every state: for inspection and tests; late chunking pools on the device with ``span_sums``)."""
    hidden, _ = forward_tokens_packed(model, ids, device)
    return list(hidden.float().cpu().split([len(row) for row in ids]))


@torch.inference_mode()
def pooled_packed(model: PreTrainedModel, ids: Sequence[Sequence[int]], device: torch.device | str) -> torch.Tensor:
    """Mean-pooled (n, H) float32 embeddings of ``ids`` from ONE packed forward pass, left on the
    device and not waited for (read them back with ``pipeline.LaggedReadback`` or ``.cpu()``)."""
    packed = pack(ids, device)
    return segment_mean(_forward_packed(model, packed), packed.segments, packed.counts)


def forward_pooled_packed(
    model: PreTrainedModel, ids: Sequence[Sequence[int]], device: torch.device | str
) -> np.ndarray:
    """``pooled_packed`` as a numpy array on the host (n, H) float32."""
    return pooled_packed(model, ids, device).cpu().numpy()

"""Stand-ins for ``torch.nn.attention.varlen.varlen_attn`` (a CUDA-only kernel) that run anywhere.

The GPU check's dry run (``bash benchmarks/gpu_check.sh --dry-run``) and the tests drive jinav3's
CUDA branch on the CPU through these: the same signature as torch's, the same argument checks as its
FlashAttention-2 kernel (fp16/bf16 only, (T, heads, d) inputs with unit stride in d, int32 cumulative
lengths that end at T, integer maxima no smaller than the longest sequence, d a multiple of 8 up to
256), and the same result, computed as plain SDPA per sequence in float32.

Two signatures, as torch changed it (``jinav3.packing.varlen_takes_scale`` tells them apart):

    torch 2.10   varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False,
                             return_aux=None)                     scale fixed at 1/sqrt(d)
    torch 2.12   varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None,
                             scale=None, window_size=(-1, -1), enable_gqa=False, seqused_k=None,
                             block_table=None, num_splits=None)

(Sources read between the two, likely 2.11, have 2.12's form without the last four keywords: keyword-only
``scale`` too.)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def check_arguments(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seq_q: torch.Tensor,
                    cu_seq_k: torch.Tensor | None, max_q: Any, max_k: Any) -> None:
    """What the CUDA kernel refuses, refused here with a ValueError."""
    if query.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"varlen_attn: FlashAttention supports fp16 and bf16 only, got {query.dtype}")
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.dim() != 3:
            raise ValueError(f"varlen_attn: {name} must be (T, heads, d), got shape {tuple(t.shape)}")
        if t.dtype != query.dtype or t.device != query.device:
            raise ValueError(f"varlen_attn: {name} must match query's dtype and device")
        if t.stride(-1) != 1:
            raise ValueError(f"varlen_attn: {name} must have unit stride in its last dimension")
    d = query.shape[-1]
    if d % 8 or d > 256:
        raise ValueError(f"varlen_attn: head dimension must be a multiple of 8 up to 256, got {d}")
    if key.shape != value.shape or key.shape[1:] != query.shape[1:]:
        raise ValueError("varlen_attn: query, key and value need the same heads and head dimension")
    for name, cu, total, longest in (("cu_seq_q", cu_seq_q, query.shape[0], max_q),
                                     ("cu_seq_k", cu_seq_k if cu_seq_k is not None else cu_seq_q, key.shape[0], max_k)):
        if cu.dtype != torch.int32 or cu.dim() != 1 or cu.device != query.device:
            raise ValueError(f"varlen_attn: {name} must be a 1-D int32 tensor on the inputs' device")
        bounds = cu.tolist()
        if bounds[0] != 0 or bounds[-1] != total or any(b < a for a, b in zip(bounds[:-1], bounds[1:], strict=True)):
            raise ValueError(f"varlen_attn: {name} must rise from 0 to {total}, got {bounds[:4]}...{bounds[-1]}")
        if not isinstance(longest, int) or longest < max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)):
            raise ValueError(f"varlen_attn: the maximum length for {name} must be an int >= the longest sequence")
    if cu_seq_k is not None and cu_seq_k.shape != cu_seq_q.shape:
        raise ValueError("varlen_attn: cu_seq_q and cu_seq_k must have the same length")


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seq_q: torch.Tensor,
            scale: float | None) -> torch.Tensor:
    """(T, heads, d) -> (T, heads, d): SDPA on each sequence's slice, in float32, rounded once."""
    out = torch.empty_like(query)
    bounds = cu_seq_q.tolist()
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b > a:
            q, k, v = (t[a:b].transpose(0, 1).float() for t in (query, key, value))  # (heads, n, d)
            out[a:b] = F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(0, 1).to(query.dtype)
    return out


def varlen_attn_2_10(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seq_q: torch.Tensor,
                     cu_seq_k: torch.Tensor, max_q: int, max_k: int, is_causal: bool = False,
                     return_aux: Any = None) -> torch.Tensor:
    """torch 2.10's signature: no scale (1/sqrt(d))."""
    if is_causal or return_aux is not None:
        raise NotImplementedError("the stand-in computes full, non-causal attention without auxiliary outputs")
    check_arguments(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k)
    return _attend(query, key, value, cu_seq_q, None)


def varlen_attn_2_12(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seq_q: torch.Tensor,
                     cu_seq_k: torch.Tensor | None, max_q: int, max_k: int, *, return_aux: Any = None,
                     scale: float | None = None, window_size: tuple[int, int] = (-1, -1), enable_gqa: bool = False,
                     seqused_k: torch.Tensor | None = None, block_table: torch.Tensor | None = None,
                     num_splits: int | None = None) -> torch.Tensor:
    """torch 2.12's signature: keyword-only scale and window_size."""
    if tuple(window_size) != (-1, -1) or return_aux is not None or enable_gqa or seqused_k is not None \
            or block_table is not None:
        raise NotImplementedError("the stand-in computes full attention over packed sequences only")
    check_arguments(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k)
    return _attend(query, key, value, cu_seq_q, scale)


def install(signature: str = "2.12", device_type: str = "cpu") -> None:
    """Route jinav3's packed fp16/bf16 attention on ``device_type`` through the stand-in of that signature."""
    from jinav3 import packing

    packing.use_varlen_stand_in({"2.10": varlen_attn_2_10, "2.12": varlen_attn_2_12}[signature], device_type)

"""From token states to embeddings: mean pooling, the Matryoshka cut, L2 normalisation."""

from __future__ import annotations

import numpy as np
import torch


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, S, H) token states, (B, S) attention mask -> (B, H) float32 means over real tokens
    (``<s>`` and ``</s>`` included, padding excluded), as the reference does."""
    mask = mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


def cut_and_normalize(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """Matryoshka cut to the first ``dimensions`` values, THEN L2-normalise (eps 1e-12) if asked."""
    if dimensions is not None:
        vectors = vectors[..., :dimensions]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if normalize:
        norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return vectors.astype(np.float32, copy=False)

"""Response bodies: the embeddings list both dialects' clients parse, in each output encoding.

    {"object": "list", "model": ..., "data": [{"object": "embedding", "index": i, "embedding": ...}],
     "usage": {"prompt_tokens": n, "total_tokens": n}}

Encodings (Jina ``embedding_type``, OpenAI ``encoding_format``):
  * float: a list of numbers;
  * base64: the little-endian float32 bytes, base64 (the openai client: ``np.frombuffer(..., "float32")``);
  * ubinary: the sign bits (bit = value > 0), 8 per byte, first value in the high bit (``np.packbits``),
    as uint8 numbers; binary: the same bytes as int8 (uint8 - 128), as LlamaIndex's client unpacks them.
"""

from __future__ import annotations

import base64

import numpy as np


def encode_vector(vector: np.ndarray, fmt: str) -> list | str:
    if fmt == "float":
        return vector.tolist()
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    packed = np.packbits(vector > 0)
    if fmt == "ubinary":
        return packed.tolist()
    if fmt == "binary":
        return (packed.astype(np.int16) - 128).tolist()
    raise ValueError(f"unknown embedding format {fmt!r}")


def embeddings_body(vectors: np.ndarray, formats: tuple[str, ...], keyed: bool, model: str, tokens: int) -> dict:
    """``keyed``: the request listed its formats, so each embedding is ``{format: value}``."""
    data = []
    for index, vector in enumerate(vectors):
        embedding = {f: encode_vector(vector, f) for f in formats} if keyed else encode_vector(vector, formats[0])
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {"object": "list", "model": model, "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

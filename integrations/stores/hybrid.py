"""Hybrid collections: dense vectors and lexical (BM25) vectors side by side, searched alone or fused.

The one place for the decisions every store shares: which search modes exist and what ``mode=None``
means, the RRF constant, the lexical field's name, and where a store's lexical encoder comes from (the
dense encoder's own tokenizer: :class:`jinav3.sparse.SparseEncoder`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jinav3.errors import ModelNotFoundError, invalid

if TYPE_CHECKING:  # the command line reads MODES and RRF_K without importing numpy
    from jinav3.sparse import SparseEncoder

MODES = ("dense", "sparse", "hybrid")
RRF_K = 60
"""Reciprocal rank fusion's constant: score = sum over the two rankings of 1 / (k + rank) (Qdrant counts ranks
from 0). 60 is the value of the method's paper (Cormack et al., 2009) and Milvus's RRFRanker default (Qdrant's
own default is 2)."""
LEXICAL_FIELD = "lexical"
"""The name of the lexical (sparse) vector in a hybrid collection."""


def check_hybrid(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise invalid("hybrid", f"must be True, False or None (keep what the collection has), got {value!r}")
    return value


def check_mode(mode: Any, hybrid: bool, where: str) -> str:
    """The search mode to use: ``None`` is hybrid on a hybrid collection, else dense."""
    if mode is None:
        return "hybrid" if hybrid else "dense"
    if mode not in MODES:
        raise invalid("mode", f"must be one of {', '.join(MODES)} (or None: hybrid on a hybrid collection, else "
                              f"dense), got {mode!r}")
    if mode != "dense" and not hybrid:
        raise invalid("mode", f"{mode!r} needs a hybrid collection, and {where} holds dense vectors only "
                              "(make one with hybrid=True / jinav3 index --hybrid)")
    return mode


def check_rrf_k(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid("rrf_k", f"must be an integer >= 1 (reciprocal rank fusion's constant), got {value!r}")
    return value


def lexical_encoder(encoder: Any, given: Any = None) -> "SparseEncoder":
    """The lexical encoder of a hybrid store: ``given`` (a SparseEncoder), else one over the dense encoder's
    own tokenizer (an Encoder's), else the tokenizer of the model the encoder names (a RemoteEncoder's:
    only tokenizer.json is fetched)."""
    from jinav3.sparse import SparseEncoder

    if given is not None:
        if not isinstance(given, SparseEncoder):
            raise invalid("sparse_encoder", f"must be a jinav3.SparseEncoder, got {type(given).__name__}")
        return given
    backend = getattr(getattr(encoder, "tokenizer", None), "backend_tokenizer", None)
    name = getattr(encoder, "name", None)
    if backend is not None:
        return SparseEncoder(backend, name=str(name or "tokenizer"))
    source = getattr(encoder, "tokenizer_source", None)  # where the model's files are, without its weights
    if isinstance(source, str) and source:
        return SparseEncoder.from_pretrained(source)
    if isinstance(name, str) and name:
        try:
            return SparseEncoder.from_pretrained(name)
        except ModelNotFoundError as error:
            raise invalid("sparse_encoder", f"the encoder has no tokenizer here and its model {name!r} gives none "
                                            f"({error}); pass sparse_encoder=jinav3.SparseEncoder.from_pretrained("
                                            "MODEL_FOLDER_OR_HUB_ID)") from error
    raise invalid("sparse_encoder", "the encoder has no tokenizer and no model name; pass "
                                    "sparse_encoder=jinav3.SparseEncoder.from_pretrained(MODEL)")

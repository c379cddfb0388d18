"""Lexical vectors from the model's own tokenizer: BM25 over XLM-RoBERTa's SentencePiece pieces.

    from jinav3 import SparseEncoder
    sparse = SparseEncoder.from_pretrained("jinaai/jina-embeddings-v3")   # the tokenizer only: no weights, no torch
    docs = sparse.encode_documents(["ZX-4410 Akku, 18 V", "Ersatzakku für ZX-4410"])
    query = sparse.encode_queries(["zx-4410 akku"])[0]
    query.indices, query.values                     # token ids and weights, ids ascending

Why the model's pieces: the 250k-piece vocabulary covers the 89 languages the model reads, CJK and other
unsegmented scripts included (a Chinese sentence becomes word-sized pieces, not one "word" per sentence as a
whitespace analyser makes it), so lexical matching works wherever the dense side does, offline, with nothing
more to download. Text is case-folded first, so "Akku" and "AKKU" are one term.

What the weights are: a document's term t gets BM25's saturated, length-normalised term frequency

    w(t, d) = tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avg_length))

and a query's terms weight 1 each. The inverse document frequency, BM25's third factor, is the store's to
apply, since only the store knows the collection (Qdrant: ``Modifier.IDF`` on the sparse vector); a score is
then sum over shared terms of idf(t) * w(t, d). Special tokens (``<s>``, ``</s>``, ...) and the task
instruction never become terms: the text is tokenised without them and no instruction is prepended.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelNotFoundError, invalid
from .validation import texts as checked_texts

K1 = 1.2  # BM25's term-frequency saturation (Robertson et al.; Lucene's and Qdrant's bm25 default)
B = 0.75  # BM25's length normalisation
AVG_LENGTH = 256.0  # the document length, in pieces, that normalisation is relative to (fastembed's bm25 default)
TOKENIZER_FILES = ("tokenizer.json",)


@dataclass(frozen=True)
class SparseVector:
    """A lexical vector: ``indices`` (token ids, ascending, unique, int64) and their ``values`` (float32)."""

    indices: np.ndarray
    values: np.ndarray

    def as_dict(self) -> dict[int, float]:
        return {int(i): float(v) for i, v in zip(self.indices, self.values, strict=True)}

    def __len__(self) -> int:
        return len(self.indices)


class SparseEncoder:
    """BM25-weighted token-id vectors from a tokenizer (see the module's docstring).

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` (the model's ``tokenizer.json``).
        name: the model it came from (for messages and signatures).
        k1 / b / avg_length: BM25's parameters (defaults 1.2, 0.75, 256 pieces).
    """

    def __init__(self, tokenizer: Any, name: str = "tokenizer", *, k1: float = K1, b: float = B,
                 avg_length: float = AVG_LENGTH) -> None:
        for arg, value, low, high in (("k1", k1, 0.0, None), ("b", b, 0.0, 1.0), ("avg_length", avg_length, 0.0, None)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
                    or value < low or (high is not None and value > high) or (arg == "avg_length" and value <= 0):
                bound = f"between {low} and {high}" if high is not None else ("> 0" if arg == "avg_length" else ">= 0")
                raise invalid(arg, f"must be a number {bound}, got {value!r}")
        self.tokenizer, self.name = tokenizer, name
        self.k1, self.b, self.avg_length = float(k1), float(b), float(avg_length)
        self._skip = self._ignored_ids(tokenizer)

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                        **options: Any) -> "SparseEncoder":
        """The tokenizer of ``model`` (a folder holding ``tokenizer.json``, or a hub id: only that file is
        downloaded). ``options``: ``k1``, ``b``, ``avg_length``."""
        from tokenizers import Tokenizer

        folder = _tokenizer_folder(model, revision, cache_dir, local_files_only)
        return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), name=str(model), **options)

    # ------------------------------------------------------------------------------ public API
    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """One BM25-weighted vector per document (term-frequency saturation and length normalisation)."""
        return [self._weigh(counts, length, document=True) for counts, length in self._terms(texts)]

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        """One vector per query: each distinct term weighs 1 (the store's IDF makes rare terms count more)."""
        return [self._weigh(counts, length, document=False) for counts, length in self._terms(texts)]

    def terms(self, text: str) -> list[str]:
        """The pieces ``text`` is matched by (for inspection: what a document and a query share)."""
        (counts, _), = self._terms([text])
        return [self.tokenizer.id_to_token(i) for i in sorted(counts)]

    def term_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Per text, its terms' ids in order, repeats included: for a store that weighs them itself (Milvus's
        BM25 function)."""
        checked = checked_texts(texts, "texts")
        folded = [unicodedata.normalize("NFKC", t).casefold() for t in checked]
        return [[i for i in encoding.ids if i not in self._skip]
                for encoding in self.tokenizer.encode_batch(folded, add_special_tokens=False)]

    # ------------------------------------------------------------------------------ internals
    def _terms(self, texts: Sequence[str]) -> list[tuple[Counter, int]]:
        """Per text: its terms' counts (token id -> occurrences) and its length in terms."""
        return [(Counter(ids), len(ids)) for ids in self.term_ids(texts)]

    def _weigh(self, counts: Counter, length: int, document: bool) -> SparseVector:
        indices = np.fromiter(sorted(counts), dtype=np.int64, count=len(counts))
        if not document:
            return SparseVector(indices, np.ones(len(indices), dtype=np.float32))
        tf = np.asarray([counts[i] for i in indices.tolist()], dtype=np.float64)
        norm = self.k1 * (1.0 - self.b + self.b * length / self.avg_length)
        return SparseVector(indices, (tf * (self.k1 + 1.0) / (tf + norm)).astype(np.float32))

    @staticmethod
    def _ignored_ids(tokenizer: Any) -> frozenset[int]:
        """Ids that are never terms: special tokens, and pieces of nothing but the word-start mark ("▁"),
        whitespace or punctuation (they would match every document)."""
        skip = set()
        for piece, index in tokenizer.get_vocab(with_added_tokens=True).items():
            bare = piece.replace("\u2581", "")
            if not bare.strip() or all(unicodedata.category(c)[0] in "PZ" for c in bare):
                skip.add(index)
        for added in tokenizer.get_added_tokens_decoder().values():
            if added.special:
                skip.add(tokenizer.token_to_id(added.content))
        return frozenset(i for i in skip if i is not None)

    def __repr__(self) -> str:
        return f"SparseEncoder({self.name!r}, k1={self.k1}, b={self.b}, avg_length={self.avg_length})"


def _tokenizer_folder(model: str | os.PathLike, revision: str | None, cache_dir: str | os.PathLike | None,
                      local_files_only: bool) -> Path:
    """A folder holding the model's tokenizer.json: the folder itself, or the hub file's cache folder."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "tokenizer.json").is_file():
            raise ModelNotFoundError(f"model: the folder {str(path)!r} holds no tokenizer.json")
        return path
    name = str(model)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelNotFoundError(f"model: {name!r} is not a folder and not a hub repo id (owner/name)")
    from huggingface_hub import hf_hub_download

    try:
        file = hf_hub_download(name, "tokenizer.json", revision=revision, local_files_only=local_files_only,
                               cache_dir=None if cache_dir is None else os.fspath(cache_dir))
    except Exception as error:  # offline, missing repo, gated: one message
        raise ModelNotFoundError(f"model: could not get the tokenizer of {name!r} (no local folder of that name, "
                                 f"and the hub cache or the hub did not have it: {type(error).__name__}: {error})") \
            from error
    return Path(file).parent

"""The passage corpus: synthetic TEXT whose token counts follow a lognormal law.

Lengths: lognormal with median 120 tokens and sigma 0.7 (mean ~150), rounded and clipped to 8..512,
counted as the tokenizer's ids of the passage WITH ``<s>``/``</s>`` and WITHOUT the task instruction
(``retrieval.passage`` adds 13 tokens in the golden tokenizer on top, and every way pays them alike).
Each passage is built from the golden tokenizer's single-piece lowercase words (a word alone
tokenizes to exactly one id, and the Unigram model segments words independently), so a passage of
n - 2 words is exactly n tokens: checked when the corpus is built. Text rather than ids, so every way
pays its own tokenisation as users do.
"""

from __future__ import annotations

import re

import numpy as np

MEDIAN, SIGMA, LOW, HIGH = 120, 0.7, 8, 512


def single_piece_words(tokenizer) -> list[str]:
    vocab = tokenizer.get_vocab()
    words = []
    for piece, index in sorted(vocab.items(), key=lambda kv: kv[1]):
        if piece.startswith("▁") and re.fullmatch(r"[a-z]{2,}", piece[1:]):
            if tokenizer(piece[1:], add_special_tokens=False)["input_ids"] == [index]:
                words.append(piece[1:])
    if len(words) < 20:
        raise RuntimeError(f"the tokenizer has only {len(words)} single-piece words; cannot build the corpus")
    return words


def lognormal_lengths(
    n: int, seed: int = 0, median: int = MEDIAN, sigma: float = SIGMA, low: int = LOW, high: int = HIGH
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.lognormal(np.log(median), sigma, n)), low, high).astype(int)


def passages(tokenizer, total_tokens: int, seed: int = 0) -> list[str]:
    """Passages (text) until their token counts (with specials) add up to about ``total_tokens``."""
    words = single_piece_words(tokenizer)
    lengths = lognormal_lengths(max(1, 4 * total_tokens // MEDIAN + 16), seed)
    keep = np.searchsorted(np.cumsum(lengths), total_tokens) + 1
    rng = np.random.default_rng(seed + 1)
    texts = [" ".join(words[j] for j in rng.integers(0, len(words), n - 2)) for n in lengths[:keep]]
    got = [len(ids) for ids in tokenizer(texts[:64])["input_ids"]]
    if got != list(lengths[: len(got)]):
        raise RuntimeError("synthetic passages do not tokenize to their planned lengths")
    return texts


def document(tokenizer, n_tokens: int, seed: int = 0) -> str:
    """One long document of exactly ``n_tokens`` tokens (specials included)."""
    words = single_piece_words(tokenizer)
    rng = np.random.default_rng(seed + 7)
    return " ".join(words[j] for j in rng.integers(0, len(words), n_tokens - 2))

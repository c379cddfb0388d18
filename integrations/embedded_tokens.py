"""What the model embeds of each text: its tokens, and the warning about texts cut at the model's length.

One count for every indexing path (``jinav3 index`` with and without ``--ray``): a text embedded whole is cut
at the model's maximum length less ``<s>``, ``</s>`` and the task's instruction; late chunking embeds all of it.
"""

from __future__ import annotations

from typing import Any


def token_counts(encoder: Any, texts: list[str]) -> list[int]:
    """Each text's tokens (no ``<s>``/``</s>``, no instruction): what the summaries count."""
    encoded = encoder.tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]


def text_room(encoder: Any, task: str | None, max_length: int | None = None) -> int | None:
    """How many of a text's tokens the model embeds when it embeds the text whole (not late-chunked): its
    maximum length less ``<s>``, ``</s>`` and the task's instruction; the rest is cut off. None when the
    encoder does not say (a server's model)."""
    limit = max_length or getattr(encoder, "max_length", None)
    instruction = getattr(encoder, "instruction", None)
    if not isinstance(limit, int) or not callable(instruction) or getattr(encoder, "tokenizer", None) is None:
        return None
    prefix = instruction(task) if task else ""
    return max(limit - 2 - (sum(token_counts(encoder, [prefix])) if prefix else 0), 0)


def embedded_tokens(encoder: Any, texts: list[str], task: str | None, max_length: int | None = None,
                    whole: bool = True) -> tuple[list[int], list[int]]:
    """THE token count of the summaries (``jinav3 index``, with and without ``--ray``): each text's tokens the
    model actually embeds, and the positions of the texts it truncated. Embedded whole, a text past the model's
    length is cut there (late chunking embeds all of it, in windows)."""
    counts = token_counts(encoder, texts)
    room = text_room(encoder, task, max_length) if whole else None
    if room is None:
        return counts, []
    return [min(n, room) for n in counts], [i for i, n in enumerate(counts) if n > room]


def truncation_warning(count: int, room: int, first: str) -> str:
    """THE warning of ``jinav3 index`` (both paths) about ``count`` documents the model cut at its length,
    embedding ``room`` tokens of each; ``first`` names the first by file:line."""
    many = count > 1
    return (f"{count} document{'s' if many else ''} past the model's length {'were' if many else 'was'} truncated: "
            f"only the first {room:,} tokens of {'each' if many else 'it'} were embedded (first: {first}); "
            "--late-chunking embeds all of a long document")


__all__ = ["token_counts", "text_room", "embedded_tokens", "truncation_warning"]

"""The Encoder: text in, jina-embeddings-v3 vectors out (numpy float32), like sentence-transformers' encode.

    enc = Encoder.from_pretrained("jinaai/jina-embeddings-v3")
    enc.encode(["a", "b"], task="text-matching", dimensions=256)     # (2, 256)
    enc.encode_queries("what helps sensitive skin?")                 # (1024,)

Steps: instruction prefix per task -> tokenize (truncate at the tokenizer's maximum) -> group by task,
sort by length, token-budget batches -> forward with that task's LoRA merged -> mean pool ->
Matryoshka cut -> L2 normalise -> back in input order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from . import checkpoint as ckpt
from .batching import token_budget_batches
from .devices import default_token_budget, pick_device, pick_dtype
from .errors import invalid
from .lora import MergedTaskLoRA
from .pooling import finish, mean_pool
from .tasks import DEFAULT_TASK, RETRIEVAL_PASSAGE, RETRIEVAL_QUERY, adapter_name, tasks_for

Texts = str | Sequence[str]


class Encoder:
    """jina-embeddings-v3 on transformers' ``JinaEmbeddingsV3Model`` with one merged LoRA adapter per task."""

    def __init__(self, checkpoint: ckpt.Checkpoint, device: torch.device, max_tokens_per_batch: int | None = None):
        self.checkpoint = checkpoint
        self.model = checkpoint.model.to(device)
        self.tokenizer = checkpoint.tokenizer
        self.device = device
        self.dtype = next(self.model.parameters()).dtype
        self.lora = MergedTaskLoRA(self.model, checkpoint.adapters)
        self.max_tokens_per_batch = max_tokens_per_batch or default_token_budget(device)
        self.name = checkpoint.source
        self._lock = threading.RLock()  # one forward pass (and task switch) at a time

    # ----------------------------------------------------------------------------- loading, saving
    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike = ckpt.DEFAULT_MODEL,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        revision: str | None = None,
        cache_dir: str | None = None,
        attn_implementation: str = "sdpa",
        max_tokens_per_batch: int | None = None,
    ) -> "Encoder":
        """Load a hub id (through the huggingface_hub cache) or a local folder of either layout."""
        if max_tokens_per_batch is not None and (not isinstance(max_tokens_per_batch, int) or max_tokens_per_batch < 1):
            raise invalid("max_tokens_per_batch", f"must be a positive integer, got {max_tokens_per_batch!r}")
        torch_device = pick_device(device)
        torch_dtype = pick_dtype(dtype, torch_device)
        folder = ckpt.resolve(model, revision=revision, cache_dir=cache_dir)
        loaded = ckpt.load(folder, torch_dtype, attn_implementation)
        encoder = cls(loaded, torch_device, max_tokens_per_batch)
        encoder.name = str(model)
        return encoder

    def save_pretrained(self, folder: str | os.PathLike) -> str:
        """Write the transformers-native layout (base weights + one peft adapter folder per task)."""
        with self._lock:
            return str(ckpt.save(folder, self.checkpoint, self.lora.base_state_dict()))

    # ----------------------------------------------------------------------------- facts
    @property
    def hidden_size(self) -> int:
        """Full embedding size (1024 for the real model)."""
        return int(self.model.config.hidden_size)

    @property
    def max_length(self) -> int:
        """Longest input in tokens, ``<s>`` and ``</s>`` included (8194 for the real model)."""
        limit = self.tokenizer.model_max_length
        return int(limit) if limit and limit < 1_000_000 else 8192

    def output_size(self, dimensions: int | None = None) -> int:
        return self.hidden_size if dimensions is None else self.check_dimensions(dimensions)

    def instruction(self, task: str | None) -> str:
        return "" if task is None else self.checkpoint.instructions.get(task, "")

    # ----------------------------------------------------------------------------- encode
    def encode(
        self,
        texts: Texts,
        task: str | None | Sequence[str | None] = DEFAULT_TASK,
        dimensions: int | None = None,
        normalize: bool = True,
        max_length: int | None = None,
        late_chunking: bool = False,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Embed ``texts``: a str gives shape (d,), a list gives (n, d), float32.

        task: one of the five task names (default ``text-matching``), None for no adapter and no
        instruction, or a list with one task per text. dimensions: Matryoshka size 1..hidden size,
        cut before normalising. max_length: truncation in tokens (default: the tokenizer's maximum).
        batch_size: at most this many texts per forward pass (the token budget applies as well).
        late_chunking: the texts are consecutive pieces of ONE document, embedded in one pass.
        """
        single = isinstance(texts, str)
        items = self._check_texts(texts)
        tasks = tasks_for(task, len(items))
        dimensions = None if dimensions is None else self.check_dimensions(dimensions)
        max_length = self._check_max_length(max_length)
        if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
            raise invalid("batch_size", f"must be a positive integer or None, got {batch_size!r}")
        if late_chunking:
            return self._encode_late_chunking(items, tasks, dimensions, normalize, max_length)
        if not items:
            return np.zeros((0, self.output_size(dimensions)), dtype=np.float32)
        pooled = self._pooled(items, tasks, max_length, batch_size, show_progress)
        vectors = finish(pooled, dimensions, normalize)
        return vectors[0] if single else vectors

    def encode_queries(self, texts: Texts, **kwargs) -> np.ndarray:
        """``encode`` with ``task="retrieval.query"``: what to embed search queries with."""
        return self.encode(texts, task=RETRIEVAL_QUERY, **kwargs)

    def encode_passages(self, texts: Texts, **kwargs) -> np.ndarray:
        """``encode`` with ``task="retrieval.passage"``: what to embed documents with."""
        return self.encode(texts, task=RETRIEVAL_PASSAGE, **kwargs)

    def _encode_late_chunking(self, items, tasks, dimensions, normalize, max_length) -> np.ndarray:
        raise NotImplementedError("late_chunking=True is not available yet")

    # ----------------------------------------------------------------------------- the work
    def tokenize(self, texts: list[str], max_length: int) -> list[list[int]]:
        """Token ids with ``<s>``/``</s>``, truncated to ``max_length`` (specials kept)."""
        encoded = self.tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)
        return encoded["input_ids"]

    def _pooled(self, items, tasks, max_length, batch_size, show_progress) -> np.ndarray:
        prefixed = [self.instruction(t) + text for t, text in zip(tasks, items)]
        ids = self.tokenize(prefixed, max_length)
        out = np.empty((len(items), self.hidden_size), dtype=np.float32)
        progress = _progress(len(items), show_progress)
        for task in dict.fromkeys(tasks):  # one group per task, in first-seen order
            group = [i for i, t in enumerate(tasks) if t == task]
            with self.adapter(task):
                for batch in token_budget_batches([len(ids[i]) for i in group], self.max_tokens_per_batch, batch_size):
                    rows = [group[j] for j in batch]
                    out[rows] = self._forward_pooled([ids[i] for i in rows])
                    progress.update(len(rows))
        progress.close()
        return out

    @torch.inference_mode()
    def _forward_pooled(self, ids: list[list[int]]) -> np.ndarray:
        input_ids, mask = self._pad(ids)
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state  # (B, S, H)
        return mean_pool(hidden, mask).cpu().numpy()

    def _pad(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), longest), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), longest), dtype=torch.long)
        for r, row in enumerate(ids):
            input_ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[r, : len(row)] = 1
        return input_ids.to(self.device), mask.to(self.device)

    @contextmanager
    def adapter(self, task: str | None) -> Iterator[torch.nn.Module]:
        """Hold the model with ``task``'s LoRA merged (None: the plain base), e.g. for token states:

            with enc.adapter("retrieval.passage") as model:
                states = model(input_ids=ids).last_hidden_state
        """
        name = None if task is None else adapter_name(task)
        with self._lock:
            self.lora.activate(name)
            yield self.model

    # ----------------------------------------------------------------------------- checks
    def check_dimensions(self, dimensions) -> int:
        if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)) or not 1 <= dimensions <= self.hidden_size:
            raise invalid("dimensions", f"must be an integer from 1 to {self.hidden_size} (or None for all), got {dimensions!r}")
        return int(dimensions)

    def _check_max_length(self, max_length) -> int:
        if max_length is None:
            return self.max_length
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not 2 <= max_length <= self.max_length:
            raise invalid("max_length", f"must be an integer from 2 to {self.max_length} (or None), got {max_length!r}")
        return max_length

    @staticmethod
    def _check_texts(texts) -> list[str]:
        if isinstance(texts, str):
            return [texts]
        if isinstance(texts, (bytes, dict)) or not isinstance(texts, Sequence):
            raise invalid("texts", f"must be a str or a list of str, got {type(texts).__name__}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise invalid(f"texts[{i}]", f"must be a str, got {type(text).__name__}")
        return list(texts)


class _NoProgress:
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, show: bool):
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="text", desc="Encoding")

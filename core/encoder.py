"""The Encoder: text in, jina-embeddings-v3 vectors out (numpy float32), like sentence-transformers' encode.

    enc = Encoder.from_pretrained("jinaai/jina-embeddings-v3")
    enc.encode(["a", "b"], task="text-matching", dimensions=256)     # (2, 256)
    enc.encode_queries("what helps sensitive skin?")                 # (1024,)

Steps: group by task -> instruction prefix -> tokenize (truncate at the tokenizer's maximum; chunk by
chunk, in a background thread when there is more than one chunk) -> sort by length, token-budget batches ->
forward with that task's LoRA merged -> mean pool -> read back one batch late (core/pipeline.py) ->
Matryoshka cut -> L2 normalise -> in input order.
"""

from __future__ import annotations

import collections
import copy
import functools
import itertools
import os
import threading
import warnings
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch

from . import checkpoint as ckpt
from . import identity, onednn, packing, pipeline, validation
from . import late_chunking as lc
from .batching import padded, token_budget_batches, windowed_batches
from .devices import emulated_bf16_warning, pick_device, pick_dtype, to_device
from .errors import invalid
from .lora import MergedTaskLoRA
from .options import SpeedOptions
from .pooling import cut_and_normalize, mean_pool
from .progress import progress_bar
from .tasks import DEFAULT_TASK, RETRIEVAL_PASSAGE, RETRIEVAL_QUERY, adapter_name, tasks_for
from .validation import boolean, int_in_range

if TYPE_CHECKING:
    from transformers import JinaEmbeddingsV3Model

Texts = str | Sequence[str]

CHUNK_TEXTS = 512  # texts tokenised per call: a fraction of a GPU batch, so the first batch starts early
# Up to this many tokens of another task (a query while passages are indexed) run as low-rank
# corrections on the resident merged weights (MergedTaskLoRA.corrected: ~1% more work per token, no
# re-merge); more tokens re-merge the weights, once, and then run at full speed.
CORRECTION_TOKENS = 2048


class Encoder:
    """jina-embeddings-v3 on transformers' ``JinaEmbeddingsV3Model`` with one merged LoRA adapter per task."""

    def __init__(self, checkpoint: ckpt.Checkpoint, device: torch.device, *, max_tokens_per_batch: int | None = None,
                 packed: bool | None = None, overlap_tokenization: bool = True, torch_compile: bool = False,
                 onednn_linears: bool | None = None, name: str | None = None, label: str | None = None,
                 options: SpeedOptions | None = None):
        """Usually reached through ``from_pretrained``. The speed options are fixed here, as keywords or as
        ``options`` (a ``SpeedOptions``, which then wins; ``with_options`` gives an Encoder with others on the same
        weights). ``name``: the model's identity (``jinav3.identity.model_identity``), recorded by vector stores;
        ``label``: a readable name for messages. Both default to those of ``checkpoint.source``."""
        if not isinstance(checkpoint, ckpt.Checkpoint):
            raise invalid("checkpoint", f"must be a jinav3 Checkpoint (see Encoder.from_pretrained), got "
                                        f"{type(checkpoint).__name__}")
        self.checkpoint = checkpoint
        model = checkpoint.model
        # Before the move: the adapters' pristine weights are copied from the host weights straight to
        # the device, where task switches read them (core/lora.py), instead of read back after the move.
        self.lora = MergedTaskLoRA(model, checkpoint.adapters, device=device)
        # transformers decorates PreTrainedModel.to with functools.wraps, which typeshed types as an unbound
        # callable: mypy takes the device for `self`. It moves the model and returns it, like nn.Module.to.
        self.model: JinaEmbeddingsV3Model = model.to(device)  # type: ignore[arg-type]  # @wraps'd .to (above)
        self.tokenizer = checkpoint.tokenizer
        self.device = device
        self.dtype = next(self.model.parameters()).dtype
        if options is None:
            options = SpeedOptions(packed, max_tokens_per_batch, overlap_tokenization, torch_compile, onednn_linears)
        self.options = options.resolve(device, self.dtype)
        # fp32 linear layers through oneDNN where MKL (torch's default) is slow: AMD CPUs (core/onednn.py)
        onednn.route_linears(self.model, bool(self.options.onednn_linears))
        if self.options.torch_compile:
            packing.compile_layers(self.model)
        self.name = name or identity.model_identity(checkpoint.source)
        self.label = label or identity.model_label(checkpoint.source)
        self._lock = threading.RLock()  # one forward pass (and task switch) at a time
        # A fast tokenizer must not be called from two threads at once: each call sets its truncation.
        self._tokenizer_lock = threading.Lock()

    @property
    def onednn_linears(self) -> bool:
        """The fp32 linear layers run through oneDNN rather than torch's default (MKL)."""
        return bool(self.options.onednn_linears)

    @property
    def packed(self) -> bool:
        """Batches run padding-free (one packed row, varlen attention) rather than padded."""
        return bool(self.options.packed)

    @property
    def max_tokens_per_batch(self) -> int:
        """Tokens per forward pass (the token budget)."""
        return int(self.options.max_tokens_per_batch or 0)  # resolved: never None

    @property
    def overlap_tokenization(self) -> bool:
        """Long lists are tokenised in a background thread while batches run."""
        return self.options.overlap_tokenization

    @property
    def torch_compile(self) -> bool:
        """The encoder layers run ``torch.compile``d."""
        return self.options.torch_compile

    def with_options(self, *, packed: bool | None = None, max_tokens_per_batch: int | None = None,
                     overlap_tokenization: bool | None = None) -> "Encoder":
        """Another Encoder on the same loaded weights and adapters with other speed options (those not
        given are kept), e.g. to compare padded and packed batches without loading the model twice.
        Both share one lock, so their forward passes never overlap."""
        other = copy.copy(self)  # shares the model, its MergedTaskLoRA and the locks
        changes: dict[str, Any] = {"packed": packed, "max_tokens_per_batch": max_tokens_per_batch,
                   "overlap_tokenization": overlap_tokenization}
        other.options = replace(self.options, **{k: v for k, v in changes.items() if v is not None})
        return other

    # ----------------------------------------------------------------------------- loading, saving
    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike = identity.DEFAULT_MODEL,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        attn_implementation: str = "sdpa",
        max_tokens_per_batch: int | None = None,
        packed: bool | None = None,
        torch_compile: bool = False,
        overlap_tokenization: bool = True,
        onednn_linears: bool | None = None,
    ) -> "Encoder":
        """Load a hub id (through the huggingface_hub cache; ``revision`` pins a branch, tag or commit,
        ``local_files_only`` never downloads) or a local folder of either layout.

        packed: run batches padding-free (one packed row, varlen attention; core/packing.py). None
        picks it where it pays: the CPU, and CUDA in bf16/fp16 with a varlen kernel; False keeps
        padded, length-sorted batches with ``attn_implementation`` (SDPA).
        max_tokens_per_batch: tokens per forward pass (default 4,096 packed on the CPU, 65,536 on CUDA).
        overlap_tokenization: tokenise long lists in a background thread while batches run.
        torch_compile: ``torch.compile`` every encoder layer (``packing.compile_layers``: dynamic
        shapes, attention left eager), fusing the elementwise work between the matrix products. The
        first batches pay seconds of compilation (measured gains: benchmarks/RESULTS.md).
        onednn_linears: run the fp32 linear layers on the CPU through oneDNN instead of MKL (same
        arithmetic, another kernel; core/onednn.py). None picks it where it measured faster: fp32 on
        AMD processors, where MKL runs at less than half oneDNN's rate (not with torch_compile).
        """
        options = SpeedOptions(packed, max_tokens_per_batch, overlap_tokenization, torch_compile, onednn_linears)
        torch_device = pick_device(device)
        torch_dtype = pick_dtype(dtype, torch_device)
        options = options.resolve(torch_device, torch_dtype)  # before loading: refuses what cannot run here
        slow = emulated_bf16_warning(torch_device, torch_dtype)
        if slow:
            warnings.warn(slow, RuntimeWarning, stacklevel=2)
        folder = ckpt.resolve(model, revision=revision, cache_dir=cache_dir,
                              local_files_only=boolean(local_files_only, "local_files_only"))
        loaded = ckpt.load(folder, torch_dtype, attn_implementation)
        return cls(loaded, torch_device, options=options, name=identity.model_identity(model, folder),
                   label=identity.model_label(model))

    def save_pretrained(self, folder: str | os.PathLike) -> str:
        """Write the transformers-native layout (base weights + one peft adapter folder per task). The
        copy records this model's identity (``name``), so it opens the same vector-store collections."""
        with self._lock:
            return str(ckpt.save(folder, self.checkpoint, self.lora.base_state_dict(), self.name))

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
        checked = self.check_dimensions(dimensions)  # None only for None: all of the hidden size
        return self.hidden_size if checked is None else checked

    def instruction(self, task: str | None) -> str:
        return "" if task is None else self.checkpoint.instructions.get(task, "")

    # ----------------------------------------------------------------------------- encode
    @overload
    def encode(self, texts: str, task: str | None | Sequence[str | None] = ..., dimensions: int | None = ...,
               normalize: bool = ..., max_length: int | None = ..., late_chunking: bool = ...,
               batch_size: int | None = ..., show_progress: bool = ..., *, window: int | None = ...,
               overlap: int | None = ...) -> np.ndarray: ...  # shape (d,)

    @overload
    def encode(self, texts: Sequence[str], task: str | None | Sequence[str | None] = ...,
               dimensions: int | None = ..., normalize: bool = ..., max_length: int | None = ...,
               late_chunking: bool = ..., batch_size: int | None = ..., show_progress: bool = ..., *,
               window: int | None = ..., overlap: int | None = ...) -> np.ndarray: ...  # shape (n, d)

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
        *,
        window: int | None = None,
        overlap: int | None = None,
    ) -> np.ndarray:
        """Embed ``texts``: a str gives shape (d,), a list gives (n, d), float32.

        task: one of the five task names (default ``text-matching``), None for no adapter and no
        instruction, or a list with one task per text. dimensions: Matryoshka size 1..hidden size,
        cut before normalising. max_length: truncation in tokens (default: the tokenizer's maximum).
        batch_size: at most this many texts per forward pass (the token budget applies as well).
        late_chunking: the texts are consecutive pieces of ONE document (Jina API semantics): joined
        with one space after the instruction, encoded together, one vector per piece. Past ``window``
        tokens (default: max_length, else the model maximum) overlapping windows (``overlap``,
        default 256) take over, so any length works.
        """
        args = validation.encode_arguments(texts, task, dimensions, normalize, max_length, late_chunking, batch_size,
                                           window, overlap, hidden_size=self.hidden_size,
                                           model_max_length=self.max_length)
        items, tasks, dimensions, normalize = args.texts, args.tasks, args.dimensions, args.normalize
        max_length = self.max_length if args.max_length is None else args.max_length
        if args.late_chunking:
            window = max_length if window is None else window
            vectors = self._encode_late_chunking(items, tasks, dimensions, normalize, window, overlap)
            return vectors[0] if args.single else vectors
        if not items:
            return np.zeros((0, self.output_size(dimensions)), dtype=np.float32)
        means = self._text_means(items, tasks, max_length, args.batch_size, show_progress)
        vectors = cut_and_normalize(means, dimensions, normalize)
        return vectors[0] if args.single else vectors

    def encode_queries(self, texts: Texts, **kwargs: Any) -> np.ndarray:
        """``encode`` with ``task="retrieval.query"``: what to embed search queries with."""
        return self.encode(texts, task=RETRIEVAL_QUERY, **kwargs)

    def encode_passages(self, texts: Texts, **kwargs: Any) -> np.ndarray:
        """``encode`` with ``task="retrieval.passage"``: what to embed documents with."""
        return self.encode(texts, task=RETRIEVAL_PASSAGE, **kwargs)

    # ----------------------------------------------------------------------------- late chunking
    def late_chunk(
        self,
        document: str,
        task: str | None = RETRIEVAL_PASSAGE,
        chunker: str | Sequence[tuple[int, int]] = "sentences",
        chunk_size: int | None = None,
        window: int | None = None,
        overlap: int | None = None,
        dimensions: int | None = None,
        normalize: bool = True,
    ) -> list[lc.Chunk]:
        """Chunk ``document`` and embed every chunk in the context of the whole document.

        chunker: "sentences" (. ! ? before a space, CJK 。！？, line breaks), "tokens" (``chunk_size``
        tokens each), or a list of (start, end) character spans. Any length works: past ``window``
        tokens (default: the model maximum) overlapping windows (``overlap``, default 256) are used.
        Returns chunks with ``text == document[start:end]`` and ``embedding``; a blank document gives [].
        """
        validation.text(document, "document")
        return self.late_chunk_documents(
            [document], task, chunker, chunk_size, window, overlap, dimensions, normalize
        )[0]

    def late_chunk_documents(
        self,
        documents: Sequence[str],
        task: str | None = RETRIEVAL_PASSAGE,
        chunker: str | Sequence[tuple[int, int]] = "sentences",
        chunk_size: int | None = None,
        window: int | None = None,
        overlap: int | None = None,
        dimensions: int | None = None,
        normalize: bool = True,
    ) -> list[list[lc.Chunk]]:
        """``late_chunk`` for many documents at once: one list of chunks per document. Documents share
        forward passes only as separate rows, so attention never crosses a document boundary and the
        result equals one call per document."""
        docs = validation.texts(documents, "documents")
        task = tasks_for(task, 1)[0]
        dimensions = self.check_dimensions(dimensions)
        normalize = boolean(normalize, "normalize")
        window, overlap = self._check_window(window, overlap)
        planned = lc.plan_documents(docs, self.instruction(task), chunker, chunk_size, self._tokenize_with_offsets)
        means = self._span_means(task, [plan.tokens for plan in planned], window, overlap)
        results: list[list[lc.Chunk]] = [[] for _ in docs]
        for plan, vectors in zip(planned, means, strict=True):  # one (spans, H) array per document
            results[plan.index] = lc.make_chunks(docs[plan.index], plan.char_spans,
                                                 cut_and_normalize(vectors, dimensions, normalize))
        return results

    def chunk_spans(
        self,
        documents: Sequence[str],
        task: str | None = RETRIEVAL_PASSAGE,
        chunker: str | Sequence[tuple[int, int]] = "sentences",
        chunk_size: int | None = None,
    ) -> list[list[tuple[int, int]]]:
        """Where ``late_chunk_documents`` would put each document's chunks, without embedding anything:
        per document the (start, end) character spans of its chunks, in order (``document[start:end]``
        is the chunk's text). Stores check every chunk against their limits with it before writing."""
        docs = validation.texts(documents, "documents")
        task = tasks_for(task, 1)[0]
        out: list[list[tuple[int, int]]] = [[] for _ in docs]
        for plan in lc.plan_documents(docs, self.instruction(task), chunker, chunk_size, self._tokenize_with_offsets):
            document = docs[plan.index]
            out[plan.index] = [t for t in (lc.trim_span(document, a, b) for a, b in plan.char_spans) if t is not None]
        return out

    def token_states(self, input_ids: Sequence[int], task: str | None = None, window: int | None = None,
                     overlap: int | None = None) -> np.ndarray:
        """(n, hidden) float32 states of every token of one id sequence (ids as given, specials
        included), through the same windows as late chunking when it is longer than ``window``."""
        vocabulary = int(self.model.config.vocab_size)
        ids = [int_in_range(i, f"input_ids[{k}]", 0, vocabulary - 1) for k, i in enumerate(input_ids)]
        if not ids:
            raise invalid("input_ids", "must hold at least one token id")
        task = tasks_for(task, 1)[0]
        window, overlap = self._check_window(window, overlap)
        per_token = lc.TokenizedDocument(ids, [(t, t + 1) for t in range(len(ids))])
        return self._span_means(task, [per_token], window, overlap)[0]

    def _encode_late_chunking(
        self,
        items: list[str],
        tasks: list[str | None],
        dimensions: int | None,
        normalize: bool,
        window: int | None,
        overlap: int | None,
    ) -> np.ndarray:
        if not items:  # (one task and no blank piece: checked by validation.encode_arguments)
            return np.zeros((0, self.output_size(dimensions)), dtype=np.float32)
        window, overlap = self._check_window(window, overlap)
        document = lc.plan_pieces(items, self.instruction(tasks[0]), self._tokenize_with_offsets)
        return cut_and_normalize(self._span_means(tasks[0], [document], window, overlap)[0], dimensions, normalize)

    def _tokenize_with_offsets(self, text: str, instruction_chars: int) -> lc.Offsets:
        with self._tokenizer_lock:
            return lc.tokenize_with_offsets(self.tokenizer, text, instruction_chars)

    def _span_means(
        self, task: str | None, documents: list[lc.TokenizedDocument], window: int, overlap: int
    ) -> list[np.ndarray]:
        """Per document, (spans, H) float32: the mean token state of each of its token spans. The spans
        are summed on the device, and only the sums come back, one batch late (core/pipeline.py)."""
        if not documents:
            return []
        sums = np.zeros((lc.span_offsets(documents)[-1], self.hidden_size), dtype=np.float32)
        with self._task_weights(task, sum(len(doc.ids) for doc in documents)):
            batches = functools.partial(token_budget_batches, packed=self.packed)
            readback = pipeline.LaggedReadback(sums, accumulate=True)
            for batch in lc.window_batches(documents, window, overlap, self.max_tokens_per_batch, batches):
                readback.put(*self._span_sums(batch))
            readback.flush()  # before the next task's adapter is merged
        return lc.span_means(sums, documents)

    @torch.inference_mode()
    def _span_sums(self, batch: lc.WindowBatch) -> tuple[np.ndarray, torch.Tensor]:
        """The spans one batch of windows adds to (m,) and their partial sums (m, H) float32, on the
        device and not waited for."""
        hidden, starts = self._token_states(batch.rows)
        spans, local = np.unique(batch.span, return_inverse=True)  # span ids -> 0..m-1 for this batch
        tokens = np.asarray(starts, dtype=np.int64)[batch.row] + batch.position  # rows of `hidden`
        return spans, packing.span_sums(hidden, tokens, local.reshape(-1), len(spans))

    @torch.inference_mode()
    def _token_states(self, ids: list[list[int]]) -> tuple[torch.Tensor, list[int]]:
        """Token states of all rows as one (N, H) tensor on the device (padding included when padded)
        and where each row starts in it."""
        if self.packed:
            return packing.forward_tokens_packed(self.model, ids, self.device)
        input_ids, mask, same_length = self._pad(ids)
        hidden = self.model(input_ids=input_ids,
                            attention_mask=None if same_length else mask).last_hidden_state  # (B, S, H)
        return hidden.reshape(-1, hidden.shape[-1]), [r * hidden.shape[1] for r in range(len(ids))]

    def _check_window(self, window: int | None, overlap: int | None) -> tuple[int, int]:
        return lc.check_window(window, overlap, self.max_length)

    # ----------------------------------------------------------------------------- the work
    def tokenize(self, texts: list[str], max_length: int) -> list[list[int]]:
        """Token ids with ``<s>``/``</s>``, truncated to ``max_length`` (specials kept)."""
        with self._tokenizer_lock:
            encoded = self.tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)
        return encoded["input_ids"]

    def _text_means(
        self, items: list[str], tasks: list[str | None], max_length: int, batch_size: int | None, show_progress: bool
    ) -> np.ndarray:
        """(n, H) float32 mean-pooled vectors of ``items``, in input order (pipeline: core/pipeline.py)."""
        out = np.empty((len(items), self.hidden_size), dtype=np.float32)
        progress = progress_bar(len(items), show_progress, unit="text", desc="Encoding")
        chunks = self._tokenized_chunks(items, tasks, max_length)
        if self.overlap_tokenization and len(items) > CHUNK_TEXTS:  # one chunk: nothing to overlap with
            chunks = pipeline.in_background(chunks)
        texts_per_task = collections.Counter(tasks)
        try:
            for task, task_chunks in itertools.groupby(chunks, key=lambda chunk: chunk[0]):
                first = next(task_chunks)  # the whole group when it fits one chunk: its size is known
                tokens = sum(len(ids) for _, ids in first[1]) if texts_per_task[task] <= CHUNK_TEXTS else None
                with self._task_weights(task, tokens):
                    readback = pipeline.LaggedReadback(out, progress.update)
                    rows = (chunk_rows for _, chunk_rows in itertools.chain([first], task_chunks))
                    for batch in windowed_batches(rows, self.max_tokens_per_batch, batch_size, self.packed):
                        readback.put([i for i, _ in batch], self._batch_means([ids for _, ids in batch]))
                    readback.flush()  # before the next task's adapter is merged
        finally:
            chunks.close()
            progress.close()
        return out

    def _tokenized_chunks(
        self, items: list[str], tasks: list[str | None], max_length: int
    ) -> Generator[tuple[str | None, list[tuple[int, list[int]]]], None, None]:
        """(task, [(index, ids), ...]) for at most CHUNK_TEXTS texts at a time, one task after another
        (first-seen order), instruction prefixed."""
        for task in dict.fromkeys(tasks):
            group = [i for i, t in enumerate(tasks) if t == task]
            prefix = self.instruction(task)
            for start in range(0, len(group), CHUNK_TEXTS):
                part = group[start : start + CHUNK_TEXTS]
                ids = self.tokenize([prefix + items[i] for i in part], max_length)
                yield task, list(zip(part, ids, strict=True))  # one id list per text

    @torch.inference_mode()
    def _batch_means(self, ids: list[list[int]]) -> torch.Tensor:
        """(n, H) float32 mean-pooled vectors of one batch of id lists, on the device, not waited for."""
        if self.packed:
            return packing.pooled_packed(self.model, ids, self.device)
        input_ids, mask, same_length = self._pad(ids)
        hidden = self.model(input_ids=input_ids,
                            attention_mask=None if same_length else mask).last_hidden_state  # (B, S, H)
        return mean_pool(hidden, mask)

    def _pad(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """``batching.padded`` on the device: (B, S) ids, attention mask, whether all rows have one length."""
        input_ids, mask, same_length = padded(ids, self.tokenizer.pad_token_id)
        return (to_device(torch.from_numpy(input_ids), self.device), to_device(torch.from_numpy(mask), self.device),
                same_length)

    @contextmanager
    def _task_weights(self, task: str | None, tokens: int | None) -> Iterator[None]:
        """Hold the model computing with ``task`` for ``tokens`` tokens (None: unknown, many): a few
        tokens of another task run as low-rank corrections on the resident weights, more re-merge.
        Compiled layers always re-merge: a correction would change what they were compiled for."""
        name = None if task is None else adapter_name(task)
        with self._lock:
            if tokens is not None and tokens <= CORRECTION_TOKENS and not self.torch_compile:
                with self.lora.corrected(name):
                    yield
            else:
                self.lora.activate(name)
                yield

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
    def check_dimensions(self, dimensions: int | None) -> int | None:
        """The Matryoshka size as an int from 1 to the hidden size; None (all of it) passes through."""
        return int_in_range(dimensions, "dimensions", 1, self.hidden_size, allow_none=True)



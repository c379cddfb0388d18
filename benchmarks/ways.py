"""The ways to embed that the benchmark compares, all on the same checkpoint and the same texts.

* ``card``: the model card's way with the transformers-native layout: ``AutoModel.from_pretrained``
  + ``load_adapter`` for the five task folders + ``set_adapter``; peft LoRA layers UNMERGED; batches
  of 32 in input order, padded to the longest, SDPA; mean pooling over the attention mask; L2 norm.
* ``jinav3-padded``: ``Encoder.encode(texts, task=...)`` with ``packed=False``: length-sorted token-budget
  batches, padded, SDPA, the task adapter merged into the weights.
* ``jinav3-packed``: the Encoder as it ships on the CPU and on CUDA bf16/fp16: packed, padding-free
  batches (``jinav3.packing``) through the encode pipeline (``jinav3.pipeline``).
* ``jinav3-packed-inline`` / ``jinav3-packed-background``: the same with tokenisation forced in line
  or into a background thread (what the pipeline's overlap is worth; the Encoder's default is the
  background whenever there is more than one chunk of 512 texts).
* ``jinav3-bf16``: the Encoder as shipped (packed) loaded with ``dtype="bfloat16"`` (CPU runs: what
  bf16 is worth against fp32 on this processor).
* ``sentence-transformers``: ``SentenceTransformer(native_dir)`` (Transformer + mean Pooling) with
  the peft adapter loaded and set, ``encode(prompt=instruction, batch_size=32)`` (length-sorted).
* ``fastembed`` / ``fastembed-sorted``: fastembed's own ``TextEmbedding`` (ONNX Runtime) on the same
  checkpoint exported to ONNX with the passage adapter merged (``onnx_export.py``), registered with
  ``TextEmbedding.add_custom_model(pooling=MEAN, normalization=True)``. ``fastembed``: the call as
  users write it, ``embed(texts)`` (batches of 256 in input order); ``fastembed-sorted``: texts sorted
  by length, ``embed(batch, batch_size=32)``, vectors put back in input order. Both prepend the task
  instruction, as every way does. One ONNX session serves both.

Optional peers (sentence-transformers, fastembed + onnxruntime) that are not installed are skipped with
a one-line note (``optional_peer``): ``pip install 'jinav3[bench]'`` installs them.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ADAPTERS = ["retrieval_query", "retrieval_passage", "separation", "classification", "text_matching"]


def adapter_name(task: str) -> str:
    return task.replace(".", "_").replace("-", "_")


@contextmanager
def quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def instructions(native_dir: Path) -> dict[str, str]:
    config = json.loads((Path(native_dir) / "config.json").read_text())
    return config.get("task_instructions") or {}


class CardWay:
    """AutoModel + peft adapters, unmerged, batches of 32 in input order (the model card's code)."""

    name = "card"

    def __init__(self, native_dir: Path, device: torch.device, dtype: torch.dtype, batch_size: int = 32):
        from transformers import AutoModel, AutoTokenizer

        self.device, self.batch_size = device, batch_size
        self.prompts = instructions(native_dir)
        with quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(str(native_dir))
            self.model = AutoModel.from_pretrained(str(native_dir), dtype=dtype, attn_implementation="sdpa")
            for name in ADAPTERS:
                self.model.load_adapter(str(Path(native_dir) / name), adapter_name=name)
        self.model.to(device).eval()
        self.model.set_adapter("retrieval_passage")

    @torch.inference_mode()
    def encode(self, texts: list[str], task: str, batch_size: int | None = None) -> np.ndarray:
        self.model.set_adapter(adapter_name(task))
        prefix = self.prompts.get(task, "")
        size = batch_size or self.batch_size
        out = []
        for i in range(0, len(texts), size):
            batch = self.tokenizer([prefix + t for t in texts[i : i + size]], padding=True, truncation=True,
                                   max_length=8194, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
            mean = (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(mean, dim=-1).cpu())
        return torch.cat(out).numpy()


class EncoderWay:
    """jinav3's Encoder, run packed (padding-free) or padded with its own token budget: the ways share
    one loaded model, each through ``Encoder.with_options``."""

    def __init__(self, encoder, packed: bool = False, budget: int | None = None, name: str | None = None,
                 overlap: bool | None = None):
        self.encoder = encoder.with_options(packed=packed, max_tokens_per_batch=budget, overlap_tokenization=overlap)
        self.name = name or ("jinav3-packed" if packed else "jinav3-padded")

    def encode(self, texts: list[str], task: str, batch_size: int | None = None) -> np.ndarray:
        return self.encoder.encode(texts, task=task, batch_size=batch_size)


class SentenceTransformersWay:
    name = "sentence-transformers"

    def __init__(self, native_dir: Path, device: torch.device, dtype: torch.dtype, batch_size: int = 32):
        from sentence_transformers import SentenceTransformer

        self.batch_size = batch_size
        self.prompts = instructions(native_dir)
        with quiet_transformers():
            self.model = SentenceTransformer(str(native_dir), device=str(device), model_kwargs={"dtype": dtype})
            for name in ADAPTERS:
                self.model.load_adapter(str(Path(native_dir) / name), adapter_name=name)
        self.model.set_adapter("retrieval_passage")
        self.model.max_seq_length = 8194

    def encode(self, texts: list[str], task: str, batch_size: int | None = None) -> np.ndarray:
        self.model.set_adapter(adapter_name(task))
        return self.model.encode(texts, prompt=self.prompts.get(task, ""), batch_size=batch_size or self.batch_size,
                                 normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def optional_peer(*modules: str) -> str | None:
    """None when every module imports, else a one-line reason to skip the way (no traceback)."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # ImportError, or a broken install that fails while importing
            return f"{module} is not importable ({type(error).__name__}: {str(error).splitlines()[0][:120]})"
    return None


class FastembedWay:
    """fastembed's ``TextEmbedding`` on the ONNX export of the checkpoint (passage adapter merged)."""

    _registered: set[str] = set()  # fastembed refuses to register one name twice in a process

    def __init__(self, onnx_dir: Path, native_dir: Path, cache_dir: Path, threads: int | None = None,
                 sorted_batch: int | None = None, shared: "FastembedWay | None" = None):
        self.sorted_batch = sorted_batch
        self.name = "fastembed-sorted" if sorted_batch else "fastembed"
        self.prompts = instructions(native_dir)
        self.passage_only = "retrieval.passage"  # the one task merged into the graph
        if shared is not None:
            self.model = shared.model
            return
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        config = json.loads((Path(native_dir) / "config.json").read_text())
        model_name = f"jinav3-bench/{Path(onnx_dir).name}"
        if model_name not in self._registered:
            TextEmbedding.add_custom_model(model=model_name, pooling=PoolingType.MEAN, normalization=True,
                                           sources=ModelSource(hf=model_name), dim=int(config["hidden_size"]),
                                           model_file="model.onnx")
            self._registered.add(model_name)
        self.model = TextEmbedding(model_name=model_name, specific_model_path=str(onnx_dir),
                                   cache_dir=str(cache_dir), threads=threads, cuda=False, local_files_only=True)

    def encode(self, texts: list[str], task: str, batch_size: int | None = None) -> np.ndarray:
        if task != self.passage_only:  # the graph holds one merged adapter: no other task to switch to
            raise NotImplementedError(f"the ONNX export has only {self.passage_only} merged in, not {task}")
        prefix = self.prompts.get(task, "")
        inputs = [prefix + t for t in texts]
        if not self.sorted_batch:
            size = batch_size or 256
            return np.stack(list(self.model.embed(inputs, batch_size=size)))
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]), reverse=True)
        size = batch_size or self.sorted_batch
        out = np.empty((len(inputs), 0), dtype=np.float32)
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            vectors = np.stack(list(self.model.embed([inputs[i] for i in rows], batch_size=size)))
            if out.shape[1] == 0:
                out = np.empty((len(inputs), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        return out

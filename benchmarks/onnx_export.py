"""The benchmark checkpoint as an ONNX graph for fastembed: the ``retrieval.passage`` adapter merged.

    folder = export_passage_onnx(native_dir, cache_root)   # reused when already there

What a fastembed user would do to run this checkpoint: load the transformers-native layout with
``AutoModel`` + peft, ``merge_and_unload()`` the passage adapter (the cheapest graph fastembed can run:
no LoRA side products, one task), and ``torch.onnx.export`` the model's token states
(``last_hidden_state``, inputs ``input_ids`` and ``attention_mask``, batch and length dynamic).
fastembed then mean-pools over the attention mask and L2-normalises (``TextEmbedding.add_custom_model``
with ``PoolingType.MEAN``, ``normalization=True``), which is jina-embeddings-v3's pooling.

The graph is written into a temporary folder next to the final one and renamed into place when it is
complete (a ``.complete`` stamp), so an interrupted export leaves nothing half-written to be reused.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import torch

FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")
MODEL_FILE = "model.onnx"


class _TokenStates(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_passage_onnx(native_dir: Path, folder: Path, opset: int = 17) -> tuple[Path, float]:
    """(the ONNX folder, seconds spent: 0 when reused) for ``native_dir``'s passage task."""
    folder = Path(folder)
    if (folder / ".complete").exists():
        return folder, 0.0
    from peft import PeftModel
    from transformers import AutoModel

    from .ways import quiet_transformers

    started = time.perf_counter()
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with quiet_transformers():
            base = AutoModel.from_pretrained(str(native_dir), dtype=torch.float32, attn_implementation="eager")
            model = PeftModel.from_pretrained(base, str(Path(native_dir) / "retrieval_passage")).merge_and_unload()
        model.eval()
        ids = torch.tensor([[0, 100, 101, 102, 2], [0, 103, 2, 1, 1]])
        mask = (ids != 1).long()
        axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                "last_hidden_state": {0: "batch", 1: "sequence"}}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_TokenStates(model), (ids, mask), str(partial / MODEL_FILE),
                              input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
        for name in FILES:
            if (Path(native_dir) / name).exists():
                shutil.copy(Path(native_dir) / name, partial / name)
        (partial / ".complete").write_text("ok\n")
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return folder, time.perf_counter() - started

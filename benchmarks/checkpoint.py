"""Random jina-embeddings-v3 checkpoints of a chosen size, written in the ORIGINAL layout
(``roberta.…parametrizations.weight.original / .0.lora_A / .0.lora_B``, five task LoRAs, rank 4) with
the golden tiny model's tokenizer, then converted to the transformers-native layout (base weights +
one peft adapter folder per task) by jinav3's own ``Encoder.save_pretrained``.

Sizes (the real model's shape is 24 x 1024, 16 heads, FFN 4096, vocab 250,002):

    tiny    2 layers,  hidden 64,   4 heads, FFN 128,  vocab 2,400    (the golden model's shape)
    medium  6 layers,  hidden 384,  6 heads, FFN 1536, vocab 250,002
    real    24 layers, hidden 1024, 16 heads, FFN 4096, vocab 250,002

The tokenizer is the golden one (2,400 pieces), so token ids stay below 2,400 whatever the vocab:
that changes nothing for speed (an embedding lookup is a gather).
Init, like the golden model: weights N(0, 0.02), LoRA A/B N(0, 0.1), LayerNorm weight 1 + N(0, 0.1),
biases N(0, 0.02); seeded, so the same size gives the same checkpoint.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "tiny-v3"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
TASKS = 5
RANK = 4


@dataclass(frozen=True)
class Size:
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int

    def linear_params(self) -> int:
        """Weights that every token multiplies through (q, k, v, o, fc1, fc2), all layers."""
        return self.layers * (4 * self.hidden * self.hidden + 2 * self.hidden * self.ffn)


SIZES = {
    "tiny": Size(2, 64, 4, 128, 2400),
    "medium": Size(6, 384, 6, 1536, 250002),
    "real": Size(24, 1024, 16, 4096, 250002),
}


def original_state_dict(size: Size, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def normal(*shape, std=0.02, mean=0.0):
        return (torch.randn(*shape, generator=g) * std + mean).to(dtype)

    h, f, v = size.hidden, size.ffn, size.vocab
    sd: dict[str, torch.Tensor] = {}

    def lora_linear(prefix: str, out_f: int, in_f: int):
        sd[f"{prefix}.parametrizations.weight.original"] = normal(out_f, in_f)
        sd[f"{prefix}.parametrizations.weight.0.lora_A"] = normal(TASKS, RANK, in_f, std=0.1)
        sd[f"{prefix}.parametrizations.weight.0.lora_B"] = normal(TASKS, out_f, RANK, std=0.1)
        sd[f"{prefix}.bias"] = normal(out_f)

    def lora_embedding(prefix: str, num: int):
        sd[f"{prefix}.parametrizations.weight.original"] = normal(num, h)
        sd[f"{prefix}.parametrizations.weight.0.lora_A"] = normal(TASKS, num, RANK, std=0.1)
        sd[f"{prefix}.parametrizations.weight.0.lora_B"] = normal(TASKS, RANK, h, std=0.1)

    def layer_norm(prefix: str):
        sd[f"{prefix}.weight"] = normal(h, std=0.1, mean=1.0)
        sd[f"{prefix}.bias"] = normal(h)

    lora_embedding("roberta.embeddings.word_embeddings", v)
    lora_embedding("roberta.embeddings.token_type_embeddings", 1)
    layer_norm("roberta.emb_ln")
    for i in range(size.layers):
        p = f"roberta.encoder.layers.{i}"
        lora_linear(f"{p}.mixer.Wqkv", 3 * h, h)
        lora_linear(f"{p}.mixer.out_proj", h, h)
        layer_norm(f"{p}.norm1")
        lora_linear(f"{p}.mlp.fc1", f, h)
        lora_linear(f"{p}.mlp.fc2", h, f)
        layer_norm(f"{p}.norm2")
    lora_linear("roberta.pooler.dense", h, h)
    return sd


def write_original(folder: Path, size: Size, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """A random checkpoint in the original jina-embeddings-v3 layout (config + model.safetensors + tokenizer)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((GOLDEN / "config.json").read_text())
    config.update(
        hidden_size=size.hidden, num_hidden_layers=size.layers, num_attention_heads=size.heads,
        intermediate_size=size.ffn, vocab_size=size.vocab,
        torch_dtype={torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype],
    )
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    for name in TOKENIZER_FILES:
        shutil.copy(GOLDEN / name, folder / name)
    state = {k: t.contiguous() for k, t in original_state_dict(size, seed, dtype).items()}
    save_file(state, str(folder / "model.safetensors"))
    return folder


def build(root: Path, size_name: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[Path, Path]:
    """(original_dir, native_dir) under ``root``; reused when already there for this size, seed and dtype."""
    from jinav3 import Encoder

    size = SIZES[size_name]
    tag = f"{size_name}-seed{seed}-{str(dtype).removeprefix('torch.')}"
    original, native = root / f"{tag}-original", root / f"{tag}-native"
    stamp = native / ".complete"
    if not stamp.exists():
        write_original(original, size, seed, dtype)
        encoder = Encoder.from_pretrained(original, device="cpu", dtype=dtype)
        encoder.save_pretrained(native)
        del encoder
        stamp.write_text("ok\n")
    return original, native

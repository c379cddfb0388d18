"""Convert the original jina-embeddings-v3 checkpoint into transformers' native model + peft adapters.

The original (`jinaai/jina-embeddings-v3`) keeps every task's LoRA inside one safetensors file, on
parametrized weights:

    roberta.encoder.layers.{i}.mixer.Wqkv.parametrizations.weight.original   (3H, H)   base weight
    roberta.encoder.layers.{i}.mixer.Wqkv.parametrizations.weight.0.lora_A   (T, r, H)  one slice per task
    roberta.encoder.layers.{i}.mixer.Wqkv.parametrizations.weight.0.lora_B   (T, 3H, r)

The native model (`JinaEmbeddingsV3Model`) has separate q/k/v projections and takes one peft LoRA
adapter per task. The reference math (reference.md section 3), with scaling = alpha / rank:

    linear:     W_t = W + (lora_B[t] @ lora_A[t]) * scaling        peft: lora_A.weight = A, lora_B.weight = B
    embedding:  W_t = W + (lora_A[t] @ lora_B[t]) * scaling        peft: lora_embedding_A = A.T, _B = B.T

A fused Wqkv splits into q/k/v by rows; the three share lora_A and each takes its rows of lora_B, so
each projection's delta equals the matching rows of the fused delta exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # imported where used: peft alone takes seconds to import, and loading needs neither
    from peft import LoraConfig
    from transformers import JinaEmbeddingsV3Config

from .errors import CheckpointFormatError
from .tasks import DEFAULT_INSTRUCTIONS, TASKS, adapter_name

PARAMETRIZED = ".parametrizations.weight."

# original module path -> native module path (applied after the "roberta." prefix is stripped)
_RENAMES: list[tuple[str, str]] = [
    (r"^emb_ln$", "embeddings.LayerNorm"),
    (r"^encoder\.layers\.(\d+)\.mixer\.out_proj", r"layers.\1.self_attn.o_proj"),
    (r"^encoder\.layers\.(\d+)\.norm1", r"layers.\1.post_attention_layernorm"),
    (r"^encoder\.layers\.(\d+)\.norm2", r"layers.\1.post_mlp_layernorm"),
    (r"^encoder\.layers\.(\d+)\.mlp", r"layers.\1.mlp"),
]
_WQKV = re.compile(r"^encoder\.layers\.(\d+)\.mixer\.Wqkv$")
EMBEDDING_MODULES = ("embeddings.word_embeddings", "embeddings.token_type_embeddings")
# Every module of the native model that carries a task LoRA (the "dense" is the pooler's).
LORA_TARGETS = [
    "q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2", "word_embeddings", "token_type_embeddings", "dense",
]


def is_original_config(config: dict) -> bool:
    # The real config says model_type "xlm-roberta"; exports that drop the key are accepted too.
    return config.get("model_type") in ("xlm-roberta", None) and "lora_adaptations" in config


def native_config(original: dict) -> JinaEmbeddingsV3Config:
    from transformers import JinaEmbeddingsV3Config


    """The native config for an original config dict. The rotary base must be carried over by hand:
    the native config reads it from ``rope_parameters`` and ignores ``rotary_emb_base``."""
    tasks = original.get("lora_adaptations")
    if list(tasks or []) != list(TASKS):
        raise CheckpointFormatError(f"config.json: lora_adaptations must be {list(TASKS)}, found {tasks!r}")
    instructions = {**DEFAULT_INSTRUCTIONS, **(original.get("task_instructions") or {})}
    native = JinaEmbeddingsV3Config(
        vocab_size=original["vocab_size"],
        hidden_size=original["hidden_size"],
        num_hidden_layers=original["num_hidden_layers"],
        num_attention_heads=original["num_attention_heads"],
        intermediate_size=original["intermediate_size"],
        hidden_act=original.get("hidden_act", "gelu"),
        max_position_embeddings=original.get("max_position_embeddings", 8194),
        type_vocab_size=original.get("type_vocab_size", 1),
        layer_norm_eps=original.get("layer_norm_eps", 1e-5),
        pad_token_id=original.get("pad_token_id", 1),
        bos_token_id=original.get("bos_token_id", 0),
        eos_token_id=original.get("eos_token_id", 2),
        rope_parameters={"rope_type": "default", "rope_theta": float(original.get("rotary_emb_base", 10000.0))},
        architectures=["JinaEmbeddingsV3Model"],
    )
    # Kept as extra keys so a saved native folder still knows its tasks and prefixes. Set as attributes,
    # which is what the config does with unknown keyword arguments (its typed signature lacks them).
    native.lora_adaptations = list(TASKS)
    native.task_instructions = instructions
    native.matryoshka_dimensions = original.get("matryoshka_dimensions")
    return native


@dataclass(frozen=True)
class OriginalLoRA:
    """The original checkpoint's LoRA settings under peft's ``LoraConfig`` names, without importing peft
    (seconds at start-up): ``lora.lora_scaling`` reads them as it reads a LoraConfig, and ``save_pretrained``
    writes the peft config a native folder holds."""

    r: int
    lora_alpha: float
    use_rslora: bool = False
    use_dora: bool = False
    rank_pattern: tuple = ()
    alpha_pattern: tuple = ()

    def peft(self) -> LoraConfig:
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.lora_alpha,  # type: ignore[arg-type]  # a float on purpose: see lora_config
            lora_dropout=0.0,
            target_modules=LORA_TARGETS,
            bias="none",
            inference_mode=True,
        )

    def save_pretrained(self, folder: str) -> None:
        self.peft().save_pretrained(folder)


def lora_config(original: dict) -> OriginalLoRA:
    # peft annotates lora_alpha as int but only divides by it (scaling = alpha / r); the original config
    # may hold a fractional alpha, so it stays a float as it always was.
    return OriginalLoRA(r=int(original.get("lora_rank", 4)), lora_alpha=float(original.get("lora_alpha", 1)))


def _native_name(path: str) -> str:
    for pattern, replacement in _RENAMES:
        if re.match(pattern, path):
            return re.sub(pattern, replacement, path)
    return path  # embeddings.word_embeddings, embeddings.token_type_embeddings, pooler.dense


def convert_state_dict(
    original: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """Split an original state dict into (native base weights, {adapter name: peft state dict})."""
    base: dict[str, torch.Tensor] = {}
    adapters: dict[str, dict[str, torch.Tensor]] = {adapter_name(t): {} for t in TASKS}
    lora: dict[str, dict[str, torch.Tensor]] = {}  # module path -> {"A": ..., "B": ...}

    for key, tensor in original.items():
        key = key.removeprefix("roberta.")
        tensor = tensor.to(dtype)
        if PARAMETRIZED in key:
            module, _, leaf = key.partition(PARAMETRIZED)
            if leaf == "original":
                _put_base(base, module, "weight", tensor)
            elif leaf in ("0.lora_A", "0.lora_B"):
                lora.setdefault(module, {})[leaf[-1]] = tensor
            else:
                raise CheckpointFormatError(f"model.safetensors: unexpected parametrized tensor {key!r}")
        else:
            module, _, leaf = key.rpartition(".")
            _put_base(base, module, leaf, tensor)

    for module, ab in lora.items():
        if set(ab) != {"A", "B"}:
            raise CheckpointFormatError(f"model.safetensors: {module} has only lora_{''.join(ab)}")
        for t, task in enumerate(TASKS):
            _put_lora(adapters[adapter_name(task)], module, ab["A"][t], ab["B"][t])
    if not lora:
        raise CheckpointFormatError("model.safetensors holds no LoRA tensors (`...parametrizations.weight.0.lora_A`)")
    return base, adapters


def _put_base(base: dict, module: str, leaf: str, tensor: torch.Tensor) -> None:
    fused = _WQKV.match(module)
    if fused:
        layer = fused.group(1)
        for proj, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
            base[f"layers.{layer}.self_attn.{proj}.{leaf}"] = part.contiguous()
    else:
        base[f"{_native_name(module)}.{leaf}"] = tensor


def _put_lora(adapter: dict, module: str, a: torch.Tensor, b: torch.Tensor) -> None:
    prefix = "base_model.model."
    if module in EMBEDDING_MODULES:
        # reference: W + A @ B with A (num_embeddings, r), B (r, dim); peft stores A.T (r, num) and B.T (dim, r)
        adapter[f"{prefix}{module}.lora_embedding_A"] = a.T.contiguous()
        adapter[f"{prefix}{module}.lora_embedding_B"] = b.T.contiguous()
        return
    fused = _WQKV.match(module)
    if fused:
        layer = fused.group(1)
        for proj, b_rows in zip(("q_proj", "k_proj", "v_proj"), b.chunk(3, dim=0), strict=True):
            adapter[f"{prefix}layers.{layer}.self_attn.{proj}.lora_A.weight"] = a.clone()
            adapter[f"{prefix}layers.{layer}.self_attn.{proj}.lora_B.weight"] = b_rows.contiguous()
        return
    native = _native_name(module)
    adapter[f"{prefix}{native}.lora_A.weight"] = a.clone()
    adapter[f"{prefix}{native}.lora_B.weight"] = b.contiguous()

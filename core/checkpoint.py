"""Find a checkpoint (hub id or folder), load either published layout, and save the native one.

Layouts:
  * native (`jinaai/jina-embeddings-v3-hf`): config.json with ``model_type: jina_embeddings_v3``,
    base weights, and one peft adapter folder per task (``retrieval_query/``, ...);
  * original (`jinaai/jina-embeddings-v3`): xlm-roberta config with ``lora_adaptations`` and every
    task's LoRA inside model.safetensors. Converted in memory (convert.py); never runs remote code.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import torch
from safetensors.torch import load_file, save_file

from . import convert, env
from .errors import CheckpointFormatError, ModelNotFoundError
from .identity import CONVERTED_FROM_KEY
from .lora import PEFT_PREFIX
from .tasks import DEFAULT_INSTRUCTIONS, TASKS, adapter_name

if TYPE_CHECKING:  # imported where a model loads: transformers and peft take seconds to import
    from peft import LoraConfig
    from transformers import JinaEmbeddingsV3Model, XLMRobertaTokenizer

# adapter name -> (its LoRA config, its peft state): a LoraConfig (native layout) or the original's settings
_Adapters = dict[str, tuple[Union["LoraConfig", convert.OriginalLoRA], dict[str, torch.Tensor]]]

# Skip what we never read: ONNX exports, pickled weights, other frameworks.
_IGNORE = ["onnx/*", "*.onnx", "*.onnx_data", "*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.ot"]


@dataclass
class Checkpoint:
    """Everything loaded from a checkpoint: the plain model, the task adapters, the tokenizer."""

    model: JinaEmbeddingsV3Model
    tokenizer: XLMRobertaTokenizer
    adapters: _Adapters  # adapter name -> (config, peft state)
    instructions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_INSTRUCTIONS))
    source: str = ""
    layout: str = ""
    converted_from: str | None = None  # the model a native folder was written from by save()


def resolve(model: str | os.PathLike, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
            local_files_only: bool = False) -> Path:
    """A local folder as is, else a hub repo id through huggingface_hub (its cache; HF_HUB_OFFLINE honoured;
    ``local_files_only``: the cache only, never the network)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    name = str(model)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelNotFoundError(
            f"model: {name!r} is not a folder and not a hub repo id (owner/name). "
            "Pass a local folder holding config.json, or a hub id such as jinaai/jina-embeddings-v3."
        )
    from huggingface_hub import constants, snapshot_download

    try:
        cache_folder = None if cache_dir is None else os.fspath(cache_dir)
        return Path(snapshot_download(name, revision=revision, cache_dir=cache_folder, ignore_patterns=_IGNORE,
                                      local_files_only=local_files_only))
    except Exception as error:  # offline, no network, gated, missing repo: all end the same way for the user
        cache = cache_dir or constants.HF_HUB_CACHE
        at = f" at revision {revision}" if revision else ""
        if local_files_only:
            raise ModelNotFoundError(f"model: {name!r}{at} is not in the hub cache {cache} and local_files_only=True "
                                     f"forbids downloading it ({type(error).__name__}: {error})") from error
        offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
        raise ModelNotFoundError(
            f"model: could not load {name!r}: no local folder of that name, not in the hub cache {cache}, "
            f"and the hub could not be reached{offline}: {type(error).__name__}: {error}. "
            "Supply a local folder instead (download it elsewhere, e.g. `hf download "
            f"{name} --local-dir DIR`, then from_pretrained('DIR') or {env.MODEL}=DIR), "
            "or allow downloads (network access, HF_HUB_OFFLINE unset)."
        ) from error


# ------------------------------------------------------------------------------------------- loading
def read_config(folder: Path) -> dict:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointFormatError(f"{folder}: no config.json; this folder is not a model checkpoint")
    return json.loads(config_file.read_text())


def layout_of(config: dict) -> str:
    if config.get("model_type") == "jina_embeddings_v3":
        return "native"
    if convert.is_original_config(config):
        return "original"
    raise CheckpointFormatError(
        f"config.json: model_type {config.get('model_type')!r} is neither jina_embeddings_v3 "
        "(transformers-native) nor xlm-roberta with lora_adaptations (the original jina-embeddings-v3)"
    )


def load(folder: Path, dtype: torch.dtype, attn_implementation: str = "sdpa") -> Checkpoint:
    config = read_config(folder)
    layout = layout_of(config)
    from transformers import XLMRobertaTokenizer

    # never AutoTokenizer: the original asks for remote code
    tokenizer = XLMRobertaTokenizer.from_pretrained(str(folder))
    if layout == "original":
        model, adapters = _load_original(folder, config, dtype, attn_implementation)
    else:
        model, adapters = _load_native(folder, dtype, attn_implementation)
    instructions = {**DEFAULT_INSTRUCTIONS, **(config.get("task_instructions") or {})}
    model.eval().requires_grad_(False)
    return Checkpoint(model, tokenizer, adapters, instructions, source=str(folder), layout=layout,
                      converted_from=config.get(CONVERTED_FROM_KEY))


def _load_original(
    folder: Path, config: dict, dtype: torch.dtype, attn: str
) -> tuple[JinaEmbeddingsV3Model, _Adapters]:
    from transformers import JinaEmbeddingsV3Model
    from transformers.initialization import no_init_weights

    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise CheckpointFormatError(f"{folder}: the original layout needs model.safetensors")
    base, adapter_states = convert.convert_state_dict(load_file(str(weights)), dtype=dtype)
    native = convert.native_config(config)
    native._attn_implementation = attn
    with no_init_weights():  # the checkpoint overwrites every weight: skip the random init
        model = JinaEmbeddingsV3Model(native)  # (no .to(dtype): rotary inv_freq must stay float32)
    if "pooler.dense.weight" not in base:  # some exports leave the (unused) pooler out
        h = native.hidden_size
        base["pooler.dense.weight"] = torch.zeros(h, h, dtype=dtype)
        base["pooler.dense.bias"] = torch.zeros(h, dtype=dtype)
    model.load_state_dict(base, strict=True, assign=True)
    lora_config = convert.lora_config(config)
    return model, {name: (lora_config, state) for name, state in adapter_states.items()}


def _load_native(folder: Path, dtype: torch.dtype, attn: str) -> tuple[JinaEmbeddingsV3Model, _Adapters]:
    with _quiet_transformers():
        return _load_native_loud(folder, dtype, attn)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Loading five adapters one by one makes transformers report every other adapter's keys as
    "missing" and peft warn about multiple adapters: expected here, so keep it off the user's screen."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _load_native_loud(folder: Path, dtype: torch.dtype, attn: str) -> tuple[JinaEmbeddingsV3Model, _Adapters]:
    from peft import LoraConfig
    from transformers import JinaEmbeddingsV3Model

    model = JinaEmbeddingsV3Model.from_pretrained(str(folder), dtype=dtype, attn_implementation=attn)
    adapters: _Adapters = {}
    for task in TASKS:
        name = adapter_name(task)
        if not (folder / name / "adapter_config.json").is_file():
            raise CheckpointFormatError(f"{folder}: no adapter folder {name}/ (expected one per task: {TASKS})")
        # transformers' load_adapter applies the model's weight renames to adapter keys, whatever they are
        model.load_adapter(str(folder / name), adapter_name=name)
        config = model.peft_config[name]
        if not isinstance(config, LoraConfig):  # transformers loads LoRA adapters only; lora.py merges LoRA
            raise CheckpointFormatError(f"{folder / name}: not a LoRA adapter ({type(config).__name__})")
        state = {PEFT_PREFIX + k: v for k, v in model.get_adapter_state_dict(name).items()}
        adapters[name] = (config, state)
    _strip_peft_layers(model)
    return model, adapters


def _strip_peft_layers(model: JinaEmbeddingsV3Model) -> None:
    """Put every wrapped layer's base layer back: we merge adapters ourselves (lora.py)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    model._hf_peft_config_loaded = False
    if hasattr(model, "peft_config"):
        del model.peft_config


def save(folder: str | os.PathLike, checkpoint: Checkpoint, base_state: dict[str, torch.Tensor], name: str) -> Path:
    """Write the native layout: config + base weights + tokenizer, and one peft adapter folder per
    task; ``name`` (the model's name) is recorded as the model it was converted from."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = checkpoint.model
    setattr(model.config, CONVERTED_FROM_KEY, name)
    model.config.task_instructions = checkpoint.instructions
    model.config.lora_adaptations = list(TASKS)
    model.save_pretrained(str(folder), state_dict=base_state)
    checkpoint.tokenizer.save_pretrained(str(folder))
    for name, (config, state) in checkpoint.adapters.items():
        (folder / name).mkdir(exist_ok=True)
        config.save_pretrained(str(folder / name))
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        save_file(tensors, str(folder / name / "adapter_model.safetensors"))
    return folder

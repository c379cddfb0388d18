"""Task LoRA adapters, at no per-token cost once a task is active.

Each task is a peft LoRA adapter (rank 4). Running peft's LoRA layers unmerged adds two skinny
matmuls to every linear layer for every token. Instead:

  * linear layers get the task merged into their weight, once per task switch:
        W_task = W_base + B @ A * scaling
    always recomputed from a pristine copy of W_base (never "unmerge, then merge the next task"),
    so switching tasks back and forth gives bit-identical weights. The pristine copy and every
    task's factors live on the model's device (on a GPU: one more copy of the linear weights, 0.6 GB
    in bf16 for the real model), so a switch is device work only: nothing comes from host memory.
    The copy is taken from the weights before the model moves to its device (no read back).
  * embedding tables keep their base weights and add the task's rows at lookup time:
        E_task[ids] = E[ids] + A.T[ids] @ B.T * scaling          (peft layout: A (r, vocab), B (dim, r))
    a rank-4 gather and a (4 x dim) product per token: nothing next to a layer, while merging the
    250,002-row word embedding would dominate every task switch (and its pristine copy the memory).
  * a few tokens of another task (a query while passages are indexed) need no re-merge at all:
    ``corrected(task)`` runs them on the resident merged weights, each linear layer adding
        x @ (dW_task - dW_resident).T  =  (x @ A_t.T) @ (B_t.T s_t)  -  (x @ A_r.T) @ (B_r.T s_r)
    four rank-4 products per layer (about 1% of the layer's multiply-adds), exact up to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import torch
from torch import nn

from .errors import CheckpointFormatError, invalid

if TYPE_CHECKING:  # peft takes seconds to import; only its config's fields are read here
    from peft import LoraConfig

    from .convert import OriginalLoRA

    AdapterConfig = Union[LoraConfig, OriginalLoRA]

PEFT_PREFIX = "base_model.model."


class _Unset:
    """The type of _NOT_CORRECTING: no ``corrected()`` block is running (None is an adapter choice,
    the plain base, so it cannot mean "none")."""


_NOT_CORRECTING = _Unset()
_OWNER = "_jinav3_task_lora"  # set on a model once a MergedTaskLoRA manages it


@dataclass
class _Factors:
    """One module's LoRA pair; whether it is merged or looked up follows the module's type."""

    a: torch.Tensor  # (r, in) for linear, (r, num_embeddings) for embedding
    b: torch.Tensor  # (out, r) for linear, (dim, r) for embedding


def lora_scaling(config: AdapterConfig) -> float:
    if config.rank_pattern or config.alpha_pattern or getattr(config, "use_dora", False):
        raise CheckpointFormatError("adapter_config.json: rank_pattern, alpha_pattern and DoRA are not supported")
    return config.lora_alpha / (math.sqrt(config.r) if config.use_rslora else config.r)


def parse_adapter(state: dict[str, torch.Tensor]) -> dict[str, _Factors]:
    """peft adapter state dict -> {module path: factors}. Accepts keys with or without the
    ``base_model.model.`` prefix that peft writes to adapter_model.safetensors."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        key = key.removeprefix(PEFT_PREFIX)
        for suffix in (".lora_A.weight", ".lora_B.weight", ".lora_embedding_A", ".lora_embedding_B"):
            if key.endswith(suffix):
                parts.setdefault(key[: -len(suffix)], {})[suffix] = tensor
                break
        else:
            raise CheckpointFormatError(f"adapter: unexpected tensor {key!r} (only LoRA A/B factors are supported)")
    factors = {}
    for module, p in parts.items():
        if ".lora_A.weight" in p and ".lora_B.weight" in p:
            factors[module] = _Factors(p[".lora_A.weight"], p[".lora_B.weight"])
        elif ".lora_embedding_A" in p and ".lora_embedding_B" in p:
            factors[module] = _Factors(p[".lora_embedding_A"], p[".lora_embedding_B"])
        else:
            raise CheckpointFormatError(f"adapter: module {module!r} lacks one of its LoRA factors")
    return factors


def _weight(module: nn.Module) -> torch.Tensor:
    """A LoRA target's weight, a tensor (``nn.Module`` attributes are typed tensor-or-module)."""
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise CheckpointFormatError(f"LoRA target {type(module).__name__}: its weight is not a tensor")
    return weight


class MergedTaskLoRA:
    """Holds every task's LoRA factors and the pristine base weights; ``activate(task)`` merges one.

    ``device``: where the model will run. Give it when the model is still on the host, and move the
    model afterwards: the pristine copy then goes straight from the host weights to the device (no
    copy back from the device), and the factors are put there once. None: the weights' device now."""

    def __init__(self, model: nn.Module, adapters: dict[str, tuple[AdapterConfig, dict[str, torch.Tensor]]],
                 device: torch.device | str | None = None):
        # Merging writes the task into the model's weights and hooks its embeddings: a second owner
        # would snapshot already-merged weights as "pristine" and add every hook twice.
        if getattr(model, _OWNER, None) is not None:
            raise invalid("checkpoint", "its model already belongs to an Encoder (task weights are merged into it in "
                                        "place); load the checkpoint again, e.g. with Encoder.from_pretrained(...)")
        setattr(model, _OWNER, True)
        self.model = model
        self.configs = {name: config for name, (config, _) in adapters.items()}
        self.states = {name: state for name, (_, state) in adapters.items()}  # peft format, for saving
        self.scaling = {name: lora_scaling(config) for name, config in self.configs.items()}
        self.factors = {name: parse_adapter(state) for name, state in self.states.items()}
        modules = dict(model.named_modules())
        self.targets: dict[str, nn.Module] = {}
        for name, factors in self.factors.items():
            for path in factors:
                if path not in modules or not hasattr(modules[path], "weight"):
                    raise CheckpointFormatError(f"adapter {name!r}: the model has no module {path!r}")
                self.targets[path] = modules[path]
        self.merged = {path: m for path, m in self.targets.items() if not isinstance(m, nn.Embedding)}
        self.looked_up = {path: m for path, m in self.targets.items() if isinstance(m, nn.Embedding)}
        self.device = torch.device(device) if device is not None else next(
            (_weight(m).device for m in self.targets.values()), torch.device("cpu"))
        self.pristine: dict[str, torch.Tensor] = {}
        self.active: str | None = None  # the adapter merged into the weights (None: the plain base)
        self.merges = 0  # how many times the weights were rewritten for another adapter
        self._correcting: str | None | _Unset = _NOT_CORRECTING  # the adapter run by corrected(), if one is
        self._snapshot_pristine()
        self._lookup_factors = {path: self._embedding_factors(path) for path in self.looked_up}
        self._low_rank_factors = {path: self._linear_factors(path) for path in self.merged}
        self._merge_factors = {path: self._full_factors(path) for path in self.merged}
        self._pair_factors: dict[tuple[str, object, object], tuple[torch.Tensor, torch.Tensor] | None] = {}
        for path, module in self.looked_up.items():
            module.register_forward_hook(self._embedding_hook(path))
        for path, layer in self.merged.items():
            layer.register_forward_hook(self._correction_hook(path))

    def _snapshot_pristine(self) -> None:
        for path, module in self.merged.items():  # host weights -> device: a copy, never an alias
            self.pristine[path] = _weight(module).detach().to(self.device, copy=True)

    def _embedding_factors(self, path: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per adapter: A.T (vocab, r) and B.T * scaling (r, dim), on the table's device, in float32: the
        task rows are added in float32 and rounded once to a bf16/fp16 table's dtype (a few MB)."""
        return self._transposed_factors(path, torch.float32)

    def _linear_factors(self, path: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per adapter: A.T (in, r) and B.T * scaling (r, out), on the device, in the layer's dtype."""
        return self._transposed_factors(path, _weight(self.merged[path]).dtype)

    def _transposed_factors(self, path: str, dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        factors = {}
        for adapter, by_module in self.factors.items():
            f = by_module.get(path)
            if f is not None:
                a_t = f.a.T.to(self.device, dtype).contiguous()
                b_t = (f.b.T.float() * self.scaling[adapter]).to(self.device, dtype).contiguous()
                factors[adapter] = (a_t, b_t)
        return factors

    def _full_factors(self, path: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per adapter: B (out, r) and A (r, in) in float32 on the device, what a merge multiplies."""
        return {adapter: (f.b.to(self.device, torch.float32), f.a.to(self.device, torch.float32))
                for adapter, by_module in self.factors.items() if (f := by_module.get(path)) is not None}

    def _embedding_hook(self, path: str) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor]:
        def add_task_rows(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            adapter = self.running
            factors = self._lookup_factors[path].get(adapter) if adapter is not None else None
            if factors is None:
                return output
            a_t, b_t = factors
            rows = torch.nn.functional.embedding(inputs[0], a_t) @ b_t  # (..., r) @ (r, dim), float32
            return (output.float() + rows).to(output.dtype)

        return add_task_rows

    def _correction_hook(self, path: str) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor]:
        def correct(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            if self._correcting is _NOT_CORRECTING:  # the usual case: the merged weights are the task's
                return output
            pair = self._correction_factors(path)
            if pair is None:
                return output
            a_t, b_t = pair
            x = inputs[0].reshape(-1, a_t.shape[0])  # (tokens, in)
            # in place: output (..., out) += (x @ [A_run; A_resident].T) @ [B_run s; -B_resident s].T
            output.view(-1, b_t.shape[1]).addmm_(x @ a_t, b_t)
            return output

        return correct

    def _correction_factors(self, path: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For the running correction of one linear layer: the two adapters' factors side by side,
        A.T (in, 2r) and signed B.T * scaling (2r, out), so that one pair of skinny products applies
        dW_run - dW_resident. Built on first use per (running, resident) pair and kept: a few KB."""
        key = (path, self._correcting, self.active)
        if key not in self._pair_factors:
            factors = self._low_rank_factors[path]
            a_parts, b_parts = [], []
            for adapter, sign in ((self._correcting, 1.0), (self.active, -1.0)):
                if isinstance(adapter, str) and adapter in factors:
                    a_t, b_t = factors[adapter]
                    a_parts.append(a_t)
                    b_parts.append(sign * b_t)
            self._pair_factors[key] = None if not a_parts else (
                torch.cat(a_parts, dim=1).contiguous(), torch.cat(b_parts, dim=0).contiguous())
        return self._pair_factors[key]

    @property
    def running(self) -> str | None:
        """The adapter the model computes with now: the one ``corrected`` runs, else the merged one."""
        return self.active if isinstance(self._correcting, _Unset) else self._correcting

    @contextmanager
    def corrected(self, adapter: str | None) -> Iterator[None]:
        """Run ``adapter`` (None: the plain base) on the resident merged weights, as low-rank
        corrections in every linear layer: no weights are rewritten, so it costs nothing to enter and
        the resident task is still merged afterwards. For small batches; large ones ``activate``."""
        self._check_adapter(adapter)
        if adapter == self.active:
            yield
            return
        self._correcting = adapter
        try:
            yield
        finally:
            self._correcting = _NOT_CORRECTING

    def _check_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self.factors:
            raise CheckpointFormatError(f"this checkpoint has no adapter {adapter!r}; it has {sorted(self.factors)}")

    def delta(self, adapter: str, path: str) -> torch.Tensor | None:
        """The full-size weight update B @ A * scaling (float32, on the device) of one linear layer, or None."""
        factors = self._merge_factors[path].get(adapter)
        if factors is None:
            return None
        b, a = factors
        return (b @ a) * self.scaling[adapter]  # (out, r) @ (r, in)

    @torch.no_grad()
    def activate(self, adapter: str | None) -> None:
        """Write base + adapter (or the plain base for None) into the model's weights."""
        if adapter == self.active:
            return
        self._check_adapter(adapter)
        for path, module in self.merged.items():
            weight = _weight(module)
            base = self.pristine[path]  # on the weight's device: a device-to-device copy
            delta = self.delta(adapter, path) if adapter is not None else None
            if delta is None:
                weight.copy_(base)
            else:
                weight.copy_((base.float() + delta).to(weight.dtype))
        self.active = adapter
        self.merges += 1

    def base_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's state dict with pristine (unmerged) weights, for saving."""
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        for path in self.merged:
            state[f"{path}.weight"] = self.pristine[path].cpu()
        return state

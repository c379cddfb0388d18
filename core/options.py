"""The Encoder's speed options: how it runs, never what it computes. One frozen value, checked once when made
(``SpeedOptions(...)``), completed for a device and dtype once (``resolve``); ``Encoder.with_options`` makes
another with ``dataclasses.replace``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import onednn, packing
from .devices import default_token_budget
from .validation import boolean, positive_int

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SpeedOptions:
    """packed: padding-free batches (None: where they measured faster). max_tokens_per_batch: the token budget
    (None: the device's default). overlap_tokenization: tokenise in a background thread while batches run.
    torch_compile: compile the encoder layers. onednn_linears: fp32 linear layers through oneDNN (None: where
    it measured faster). ``resolve`` turns every None into the device's choice."""

    packed: bool | None = None
    max_tokens_per_batch: int | None = None
    overlap_tokenization: bool = True
    torch_compile: bool = False
    onednn_linears: bool | None = None

    def __post_init__(self) -> None:
        checked = {
            "packed": None if self.packed is None else boolean(self.packed, "packed"),
            "max_tokens_per_batch": positive_int(self.max_tokens_per_batch, "max_tokens_per_batch", allow_none=True),
            "overlap_tokenization": boolean(self.overlap_tokenization, "overlap_tokenization"),
            "torch_compile": boolean(self.torch_compile, "torch_compile"),
            "onednn_linears": None if self.onednn_linears is None else boolean(self.onednn_linears, "onednn_linears"),
        }
        for name, value in checked.items():  # numpy booleans and integers as plain Python values
            object.__setattr__(self, name, value)

    def resolve(self, device: torch.device, dtype: torch.dtype) -> SpeedOptions:
        """Every None decided for ``device`` and ``dtype``; refuses onednn_linears=True where it cannot run."""
        return replace(
            self,
            packed=packing.packing_supported(device, dtype) if self.packed is None else self.packed,
            max_tokens_per_batch=self.max_tokens_per_batch or default_token_budget(device),
            onednn_linears=onednn.decide(self.onednn_linears, device, dtype, self.torch_compile))

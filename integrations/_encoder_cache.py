"""One loaded Encoder per (model, device, dtype), shared by every framework component in the process.

Haystack pipelines and LlamaIndex settings often build several components for one model (a document
embedder and a text embedder, an embedding and a late-chunking transform); loading the weights once
saves memory and start-up time. The Encoder serialises its own forward passes, so sharing is safe.
Also holds the argument checks the framework adapters share, so they fail the same way.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from jinav3.checkpoint import DEFAULT_MODEL  # noqa: F401  (re-exported for the framework adapters)
from jinav3.errors import invalid
from jinav3.tasks import check_task
from jinav3.validation import positive_int

if TYPE_CHECKING:
    from jinav3.encoder import Encoder

_lock = threading.Lock()
_encoders: dict[tuple[str, str, str], Encoder] = {}


def model_key(model: str | os.PathLike) -> str:
    """The model as a plain string (hub id or path), the form components store and serialise."""
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
        raise invalid("model", f"must be a hub id or a local folder, got {model!r}")
    return os.fspath(model)


def device_key(device: object) -> str:
    """A device as a string; Haystack's ``ComponentDevice`` is accepted too (as its torch string)."""
    if device is None:
        return "auto"
    to_torch_str = getattr(device, "to_torch_str", None)
    if callable(to_torch_str):
        return to_torch_str()
    return str(device)


def check_device_dtype(device: object, dtype: object) -> tuple[str, str]:
    """Device and dtype as the strings components store, refused early if torch cannot use them."""
    from jinav3.devices import pick_device, pick_dtype

    device = device_key(device)
    if not isinstance(dtype, str):
        raise invalid("dtype", f"must be a string such as 'auto', 'float32', 'bfloat16' or 'float16', got {dtype!r}")
    pick_dtype(dtype, pick_device(device))
    return device, dtype


def get_encoder(model: str | os.PathLike, device: object = "auto", dtype: str = "auto") -> Encoder:
    """The shared Encoder for these settings, loaded on first use (thread-safe: loads once)."""
    key = (model_key(model), device_key(device), str(dtype))
    with _lock:
        encoder = _encoders.get(key)
        if encoder is None:
            from jinav3 import Encoder

            encoder = Encoder.from_pretrained(key[0], device=key[1], dtype=dtype)
            _encoders[key] = encoder
        return encoder


def clear() -> None:
    """Forget every shared Encoder (they are freed once no component holds them)."""
    with _lock:
        _encoders.clear()


def check_dimensions(dimensions: object, argument: str = "dimensions") -> int | None:
    """None or an integer >= 1; the upper bound (the model's size) is checked when the model loads."""
    return positive_int(dimensions, argument, allow_none=True)


def check_task_override(task: object, argument: str = "task") -> str | None:
    """None (use the adapter's default) or one of the five task names."""
    if task is not None and not isinstance(task, str):
        raise invalid(argument, f"must be a task name or None, got {task!r}")
    return check_task(task, argument)

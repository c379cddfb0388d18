"""One encoder per setting, shared by every framework component in the process: a loaded Encoder per
(model, device, dtype, revision, cache_dir, local_files_only), a RemoteEncoder per (server, key).

Haystack pipelines and LlamaIndex settings often build several components for one model (a document
embedder and a text embedder, an embedding and a late-chunking transform); loading the weights once
saves memory and start-up time. The Encoder serialises its own forward passes, so sharing is safe.

The cache holds encoders by weak reference: the components hold them, so a model is freed once no component
holds it any more (a component made later loads it again). Also holds the argument checks the framework
adapters share, so they fail the same way.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, overload

from jinav3.errors import invalid
from jinav3.identity import DEFAULT_MODEL  # noqa: F401  (re-exported for the framework adapters; torch-free)
from jinav3.tasks import check_task
from jinav3.validation import positive_int

if TYPE_CHECKING:
    from jinav3.encoder import Encoder
    from jinav3.remote import RemoteEncoder

_lock = threading.Lock()
# settings -> the encoder, while a component holds it (weak values: the cache alone keeps no model alive)
_encoders: weakref.WeakValueDictionary[tuple, Any] = weakref.WeakValueDictionary()


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


@overload
def get_encoder(model: str | os.PathLike, device: object = ..., dtype: str = ..., *, revision: str | None = ...,
                cache_dir: str | os.PathLike | None = ..., local_files_only: bool = ..., server_url: None = ...,
                api_key: str | None = ...) -> Encoder: ...
@overload
def get_encoder(model: str | os.PathLike, device: object = ..., dtype: str = ..., *, revision: str | None = ...,
                cache_dir: str | os.PathLike | None = ..., local_files_only: bool = ..., server_url: str,
                api_key: str | None = ...) -> RemoteEncoder: ...
@overload
def get_encoder(model: str | os.PathLike, device: object = ..., dtype: str = ..., *, revision: str | None = ...,
                cache_dir: str | os.PathLike | None = ..., local_files_only: bool = ..., server_url: str | None,
                api_key: str | None = ...) -> Encoder | RemoteEncoder: ...
def get_encoder(model: str | os.PathLike, device: object = "auto", dtype: str = "auto", *,
                revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                local_files_only: bool = False, server_url: str | None = None,
                api_key: str | None = None) -> Encoder | RemoteEncoder:
    """The shared encoder for these settings, made on first use (thread-safe: loads once).

    With ``server_url``: a ``RemoteEncoder`` of that server (``api_key``, else the environment's), keyed on
    the URL and a hash of the key (never the key itself); model, device and dtype are the server's then.
    Else the local ``Encoder`` of ``model`` at ``revision`` (from ``cache_dir``; ``local_files_only``: the
    hub cache only, no download)."""
    if server_url is not None:
        from jinav3.remote import RemoteEncoder as Remote

        fingerprint = hashlib.sha256(api_key.encode()).hexdigest()[:16] if isinstance(api_key, str) else None
        key: tuple = ("remote", server_url, fingerprint)
        with _lock:
            remote = _encoders.get(key)
            if remote is None:
                remote = Remote(server_url, api_key=api_key)
                _encoders[key] = remote
            return remote
    cache = None if cache_dir is None else os.fspath(cache_dir)
    key = (model_key(model), device_key(device), str(dtype)) + (
        (revision, cache, bool(local_files_only)) if (revision, cache, local_files_only) != (None, None, False) else ())
    with _lock:
        encoder = _encoders.get(key)
        if encoder is None:
            encoder = _load(key[0], key[1], str(dtype), revision, cache, bool(local_files_only))
            _encoders[key] = encoder
        return encoder


def _load(model: str, device: str, dtype: str, revision: str | None, cache_dir: str | None,
          local_files_only: bool) -> Encoder:
    from jinav3 import Encoder

    return Encoder.from_pretrained(model, device=device, dtype=dtype, revision=revision, cache_dir=cache_dir,
                                   local_files_only=local_files_only)


def check_source(revision: object, cache_dir: object, local_files_only: object) -> tuple[str | None, str | None, bool]:
    """``revision``, ``cache_dir`` and ``local_files_only`` as components store and serialise them."""
    if revision is not None and (not isinstance(revision, str) or not revision):
        raise invalid("revision", f"must be a branch, tag or commit of the hub repo, or None, got {revision!r}")
    if cache_dir is not None and (not isinstance(cache_dir, (str, os.PathLike)) or not os.fspath(cache_dir)):
        raise invalid("cache_dir", f"must be a folder or None, got {cache_dir!r}")
    if not isinstance(local_files_only, bool):
        raise invalid("local_files_only", f"must be True or False, got {local_files_only!r}")
    return revision, None if cache_dir is None else os.fspath(cache_dir), local_files_only


def check_server_url(server_url: object) -> str | None:
    if server_url is not None and (not isinstance(server_url, str) or not server_url.startswith(("http://",
                                                                                                 "https://"))):
        raise invalid("server_url", f"must be an http:// or https:// URL, or None, got {server_url!r}")
    return server_url


def clear() -> None:
    """Forget every shared encoder: the next component loads its own, even while others still hold theirs.
    (Not needed to free memory: an encoder no component holds is freed without it.)"""
    with _lock:
        _encoders.clear()


def check_dimensions_before_load(dimensions: object, argument: str = "dimensions") -> int | None:
    """None or an integer >= 1; the upper bound (the model's size) is checked when the model loads."""
    return positive_int(dimensions, argument, allow_none=True)


def check_task_override(task: object, argument: str = "task") -> str | None:
    """None (use the adapter's default) or one of the five task names."""
    if task is not None and not isinstance(task, str):
        raise invalid(argument, f"must be a task name or None, got {task!r}")
    return check_task(task, argument)

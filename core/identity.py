"""The model's identity as vector stores record it: the same weights, however their folder is spelled.

A hub id names itself. A local folder is the model recorded in its config.json by
``Encoder.save_pretrained`` (a converted copy keeps its model's name), else a content fingerprint
``sha256:<32 hex>``. Stores record it in their signature, so ``./m/``, ``m``, ``/abs/m``, a symlink,
another working directory or a byte-identical copy all open the same collections, and other weights
are refused. Standard library only: stores and remote encoders use it without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from hashlib import _Hash

DEFAULT_MODEL = "jinaai/jina-embeddings-v3"  # the model loaded when none is named (here: torch-free to import)

# config.json key naming the model a native folder was converted from: a converted copy keeps the
# model's name (vector stores record it in their signature), whatever folder it now lives in.
CONVERTED_FROM_KEY = "jinav3_converted_from"

FINGERPRINT_PREFIX = "sha256:"
_FINGERPRINT_HEX = 32  # 128 bits: plenty to tell checkpoints apart, short enough to read in an error
_SAMPLE_BLOCKS = 16
_SAMPLE_BLOCK_BYTES = 64 * 1024
_TENSOR_HEAD_BYTES = 64  # first bytes of every tensor: a change to any one tensor (a retrained LoRA) shows


def model_identity(model: str | os.PathLike, folder: Path | None = None) -> str:
    """The model's name as stores record it: a hub id names itself; a local folder is the model
    recorded in its config.json by ``save`` (a converted copy keeps its model's name), else a content
    fingerprint ``sha256:<32 hex>`` of its weights and config. ``folder`` is where ``model`` was
    resolved to, when known (a local ``model`` is its own folder)."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return str(model)
    folder = path if folder is None else Path(folder)
    recorded = _config(folder).get(CONVERTED_FROM_KEY)
    return recorded if isinstance(recorded, str) and recorded else fingerprint(folder)


def model_label(model: str | os.PathLike) -> str:
    """A readable name for messages: the hub id, or the folder's absolute path (symlinks resolved)."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else str(model)


def same_model(recorded: str, identity: str) -> bool:
    """Whether a store's recorded model is the model ``identity`` names. Signatures written before
    identities hold the folder as the user typed it: such a folder, if it still exists from here,
    counts when its identity matches."""
    if recorded == identity:
        return True
    if not isinstance(recorded, str) or not recorded:  # a signature without a model: nothing to compare
        return False
    path = Path(recorded).expanduser()
    if recorded.startswith(FINGERPRINT_PREFIX) or not path.is_dir():
        return False
    try:
        return model_identity(path) == identity
    except (OSError, ValueError):  # not a checkpoint (CheckpointFormatError is a ValueError), unreadable
        return False


def fingerprint(folder: Path) -> str:
    """``sha256:`` + 32 hex digits over config.json and every weight file under ``folder`` (``*.safetensors``
    at any depth, e.g. the native layout's adapter folders; ``*.bin`` when there is no safetensors).
    Per file, in the order of its path relative to ``folder``: that path, the size, the safetensors
    header, the first bytes of every tensor and 16 evenly spaced 64 KiB blocks. Sampling keeps a
    multi-GB checkpoint to milliseconds while telling apart checkpoints of equal shapes; absolute
    paths, symlinks and mtimes never enter."""
    digest = hashlib.sha256()
    digest.update((folder / "config.json").read_bytes())
    files = _weight_files(folder, ".safetensors") or _weight_files(folder, ".bin")
    for relative, file in sorted(files.items()):
        with open(file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            digest.update(f"\0{relative}\0{size}\0".encode())
            if file.suffix == ".safetensors":
                _hash_safetensors_layout(f, size, digest)
            for offset in _sample_offsets(size):
                f.seek(offset)
                digest.update(f.read(_SAMPLE_BLOCK_BYTES))
    return FINGERPRINT_PREFIX + digest.hexdigest()[:_FINGERPRINT_HEX]


def _weight_files(folder: Path, suffix: str) -> dict[str, Path]:
    """Files ending in ``suffix`` anywhere under ``folder``, keyed by their relative POSIX path;
    symlinked folders are followed, so a checkpoint assembled from links hashes like a copy."""
    found = {}
    for root, _, names in os.walk(folder, followlinks=True):
        for name in names:
            if name.endswith(suffix):
                file = Path(root, name)
                found[file.relative_to(folder).as_posix()] = file
    return found


def _hash_safetensors_layout(f: BinaryIO, size: int, digest: _Hash) -> None:
    """The header (8-byte little-endian length, then JSON: names, dtypes, shapes, offsets) and the
    first bytes of every tensor it lists."""
    head = f.read(8)
    digest.update(head)
    if len(head) < 8:
        return
    (length,) = struct.unpack("<Q", head)
    header = f.read(min(length, size - 8))
    digest.update(header)
    for start in _tensor_starts(header):
        f.seek(8 + length + start)
        digest.update(f.read(_TENSOR_HEAD_BYTES))


def _tensor_starts(header: bytes) -> list[int]:
    """Each tensor's data offset (from the end of the header), in file order; [] for a header that is
    not valid safetensors JSON (loading reports that; the sampled blocks still count)."""
    try:
        entries = json.loads(header)
        return sorted(int(e["data_offsets"][0]) for k, e in entries.items() if k != "__metadata__")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return []


def _sample_offsets(size: int) -> list[int]:
    """Where the sampled blocks start: the whole file when it is small, else 16 blocks spread evenly
    from the start to the end."""
    if size <= _SAMPLE_BLOCKS * _SAMPLE_BLOCK_BYTES:
        return list(range(0, size, _SAMPLE_BLOCK_BYTES))
    last = size - _SAMPLE_BLOCK_BYTES
    return [last * i // (_SAMPLE_BLOCKS - 1) for i in range(_SAMPLE_BLOCKS)]


def _config(folder: Path) -> dict:
    """config.json of ``folder`` ({} when it has none: the fingerprint of its weights still names it)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        return {}
    return config if isinstance(config, dict) else {}

"""jinav3: the real jina-embeddings-v3 vectors, on transformers + peft, without remote code.

``Encoder`` (and ``Chunk``) are imported on first use, so that ``import jinav3`` (and the command line's ``--help``)
does not pay for torch and transformers until a model is needed. ``RemoteEncoder`` (the same encoder over HTTP,
against ``jinav3 serve`` or the hosted Jina API) is imported on first use too, and needs only httpx.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING

from .errors import (
    CheckpointFormatError,
    CollectionNotFoundError,
    CorpusError,
    InvalidArgumentError,
    JinaV3Error,
    ModelNotFoundError,
    PartialWriteError,
    RemoteError,
    SignatureMismatchError,
    StoreError,
)
from .protocol import TextEncoder
from .tasks import DEFAULT_TASK, INDEX_TASK, SEARCH_TASK, TASKS

if TYPE_CHECKING:  # type checkers see the real classes; at run time __getattr__ imports them on first use
    from .encoder import Encoder
    from .late_chunking import Chunk
    from .remote import RemoteEncoder
    from .sparse import SparseEncoder

try:
    __version__ = _version("jinav3")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Encoder", "Chunk", "RemoteEncoder", "SparseEncoder", "TextEncoder", "TASKS", "DEFAULT_TASK", "INDEX_TASK",
    "SEARCH_TASK",
    "JinaV3Error", "InvalidArgumentError", "ModelNotFoundError", "CheckpointFormatError", "CorpusError", "StoreError",
    "CollectionNotFoundError", "SignatureMismatchError", "PartialWriteError", "RemoteError", "__version__",
]


def __getattr__(name: str) -> type:
    if name == "Encoder":
        from .encoder import Encoder

        return Encoder
    if name == "Chunk":
        from .late_chunking import Chunk

        return Chunk
    if name == "RemoteEncoder":
        from .remote import RemoteEncoder

        return RemoteEncoder
    if name == "SparseEncoder":  # lexical vectors from the model's tokenizer: no torch
        from .sparse import SparseEncoder

        return SparseEncoder
    raise AttributeError(f"module 'jinav3' has no attribute {name!r}")

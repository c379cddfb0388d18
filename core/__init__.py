"""jinav3: the real jina-embeddings-v3 vectors, on transformers + peft, without remote code.

``Encoder`` is imported on first use, so that ``import jinav3`` (and the command line's ``--help``)
does not pay for torch and transformers until a model is needed.
"""

from .errors import (
    CheckpointFormatError,
    CorpusError,
    InvalidArgumentError,
    JinaV3Error,
    ModelNotFoundError,
    PartialWriteError,
    SignatureMismatchError,
    StoreError,
)
from .tasks import DEFAULT_TASK, INDEX_TASK, SEARCH_TASK, TASKS

__version__ = "0.1.0"

__all__ = [
    "Encoder", "TASKS", "DEFAULT_TASK", "INDEX_TASK", "SEARCH_TASK", "JinaV3Error", "InvalidArgumentError",
    "ModelNotFoundError", "CheckpointFormatError", "CorpusError", "StoreError", "SignatureMismatchError",
    "PartialWriteError",
]


def __getattr__(name: str):
    if name == "Encoder":
        from .encoder import Encoder

        return Encoder
    raise AttributeError(f"module 'jinav3' has no attribute {name!r}")

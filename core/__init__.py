"""jinav3: the real jina-embeddings-v3 vectors, on transformers + peft, without remote code."""

from .encoder import Encoder
from .errors import (
    CheckpointFormatError,
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
    "ModelNotFoundError", "CheckpointFormatError", "StoreError", "SignatureMismatchError", "PartialWriteError",
]

"""The request bodies: the Jina Embeddings API's and OpenAI's, which share one route.

Field names follow the public specs: the Jina API's ``EmbeddingsV3Request`` (OpenAPI document,
mirrored in tryAGI/Jina ``src/libs/Jina/openapi.json``) and OpenAI's ``embeddings.create``. A body
may mix them: the openai client sends Jina fields such as ``task`` through ``extra_body``.

These models check JSON types only (strict: ``"true"`` is not a bool, ``1.0`` is not an int);
what the values mean is judged in ``validation.py``. Unknown fields are ignored, as the hosted APIs
do, so a client that sends something extra (``user``, a newer field) still works.
"""

from __future__ import annotations

from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field

from jinav3.tasks import DEFAULT_TASK

FORMATS = ("float", "base64", "binary", "ubinary")  # Jina's embedding_type
OPENAI_FORMATS = ("float", "base64")                # OpenAI's encoding_format


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class JinaFields(_Body):
    """The Jina Embeddings API's own fields (``input`` also takes ``{"text": ...}`` objects)."""

    # Absent: the library default (text-matching). JSON null: no adapter and no instruction, as task=None.
    task: Union[str, None] = DEFAULT_TASK
    late_chunking: Union[bool, None] = None
    embedding_type: Union[str, list[str], None] = None
    encoding_type: Union[str, list[str], None] = Field(
        default=None, description="alias of embedding_type, as LlamaIndex's JinaEmbedding sends it")
    normalized: Union[bool, None] = None
    truncate: Union[bool, None] = None


class JinaV3Fields(_Body):
    """jinav3's extensions of the Jina dialect (``jinav3.RemoteEncoder`` sends them; other clients never do):

    * ``chunker`` (with ``late_chunking`` and ONE text input, the whole document): ``"sentences"``,
      ``"tokens"`` (with ``chunk_size``) or a list of ``[start, end]`` character spans; the answer has one
      embedding per chunk, each entry with its ``start``/``end`` in the document, as
      ``Encoder.late_chunk_documents`` gives them;
    * ``window`` / ``overlap``: the late-chunking windows, in tokens (``Encoder.encode``'s);
    * ``max_length``: truncate every input to this many tokens (implies ``truncate``).
    """

    chunker: Union[str, list[list[int]], None] = None
    chunk_size: Union[int, None] = None
    window: Union[int, None] = None
    overlap: Union[int, None] = None
    max_length: Union[int, None] = None


class OpenAIFields(_Body):
    """OpenAI's fields (``input`` also takes token ids: a list of int, or a list of lists of int)."""

    encoding_format: Union[str, None] = None
    user: Union[str, None] = None


class EmbeddingsRequest(JinaFields, JinaV3Fields, OpenAIFields):
    """POST /v1/embeddings in either dialect."""

    model: Union[str, None] = None
    input: Any = Field(description="a string, {'text': ...}, a list of either, or token ids")
    dimensions: Union[int, None] = None


class TokenizeRequest(_Body):
    """POST /tokenize, as text-embeddings-inference takes it."""

    inputs: Union[str, list[str]]
    add_special_tokens: bool = True

"""``RemoteEncoder``: the jinav3 encoder over HTTP, against ``jinav3 serve`` or the hosted Jina Embeddings API.

    from jinav3 import RemoteEncoder
    enc = RemoteEncoder("http://127.0.0.1:8080")          # key: api_key=..., else $JINAV3_API_KEY
    enc = RemoteEncoder.jina_api()                         # api.jina.ai, key from $JINA_API_KEY / $JINAAI_API_KEY
    enc.encode(["a", "b"], task="retrieval.passage", dimensions=256)   # (2, 256) float32, as Encoder.encode

It speaks the ``TextEncoder`` protocol (core/protocol.py), so every store and framework component takes it
in place of a local ``Encoder``: no torch model is loaded in the process, only httpx is needed.

* Same arguments, same checks and errors as ``Encoder.encode`` (task, a list of tasks, dimensions,
  normalize, max_length, late_chunking, batch_size); against ``jinav3 serve`` the same vectors.
* Client-side batching: a list is cut into requests within the server's limits (``/info`` of jinav3
  serve; the hosted API's documented limits otherwise), ``max_concurrency`` requests in flight, results
  back in input order. Retries with exponential backoff and jitter on connection errors, timeouts, 429
  (honouring ``Retry-After``) and 5xx; any other 4xx fails at once as :class:`~jinav3.errors.RemoteError`
  naming the server's message.
* ``late_chunk_documents`` chunks on the client (the library's chunkers; ``chunker="tokens"`` asks the
  server's ``/tokenize``) and sends one request per document. Against jinav3 serve the chunk spans travel
  with the document (the server's ``chunker`` extension), so chunks and vectors equal the local
  ``Encoder.late_chunk_documents``. Against the hosted API the chunks are sent as the pieces of one
  late-chunking request (its own semantics: the pieces are one context); a document past its 8192-token
  context is refused, or with ``long_documents="windows"`` embedded in consecutive windows of chunks,
  each window its own context.
* The API key never appears in ``repr``, messages, logs or pickles (an unpickled copy reads it again from
  the environment variable it came from).
"""

from __future__ import annotations

from jinav3.late_chunking import Chunk
from jinav3.tasks import TASKS

from .client import RemoteEncoder
from .server_info import JINA_API_URL, ServerInfo

__all__ = ["RemoteEncoder", "Chunk", "ServerInfo", "JINA_API_URL", "TASKS"]

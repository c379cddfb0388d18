"""The environment variables jinav3 reads: every name in one place, so the command line, the server, the remote
client and the framework components agree on them (and the docs have one list to quote)."""

from __future__ import annotations

MODEL = "JINAV3_MODEL"          # the model the command line and `jinav3 serve` load when --model is not given
DEBUG = "JINAV3_DEBUG"          # "1": the command line prints tracebacks
SERVER_API_KEY = "JINAV3_API_KEY"   # the key of a jinav3 server (RemoteEncoder, --server, framework components)
# The hosted Jina API's key, in the order read; sent to api.jina.ai only (a Jina key goes to Jina alone).
JINA_API_KEYS = ("JINA_API_KEY", "JINAAI_API_KEY")
PINECONE_API_KEY = "PINECONE_API_KEY"

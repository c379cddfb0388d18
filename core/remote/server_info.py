"""What a RemoteEncoder knows of its server: ``/info`` of jinav3 serve, else the hosted Jina API's documented limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinav3.errors import RemoteError
from jinav3.identity import same_model
from jinav3.tasks import DEFAULT_INSTRUCTIONS

JINA_API_URL = "https://api.jina.ai/v1/embeddings"
JINA_API_MODEL = "jina-embeddings-v3"      # the name the hosted API knows the model by
JINA_MODEL_IDENTITY = "jinaai/jina-embeddings-v3"  # ... and its identity in store signatures (the hub id)

# The hosted API's limits as documented (docs.jina.ai, the public OpenAPI document): 8192 tokens per input
# and per late-chunking request, 1..1024 dimensions. Inputs per request: 512 and 2048 are both reported;
# 512 is the safe one. Request size: not documented; 4 MiB keeps well within any proxy's default.
HOSTED_MAX_TOKENS = 8192
HOSTED_HIDDEN_SIZE = 1024
HOSTED_MAX_INPUTS = 512
HOSTED_MAX_REQUEST_BYTES = 4 * 2**20



@dataclass(frozen=True)
class ServerInfo:
    """What the client knows of the server: from ``/info`` (jinav3 serve), else the hosted API's limits."""

    identity: str                    # the model's identity, recorded in store signatures
    label: str                       # a readable name for messages
    request_model: str | None        # the ``model`` field to send (None: the server's default)
    hidden_size: int
    max_length: int                  # tokens per input, <s> and </s> included
    max_inputs: int                  # inputs per request
    max_request_bytes: int
    instructions: dict[str, str]     # task -> instruction prefix (for the tokens chunker's offsets)
    jinav3: bool                     # jinav3 serve: chunk spans, window/overlap, max_length, /tokenize
    chunk_spans: bool                # the server takes ``chunker`` with late_chunking (exact late chunking)
    tokenize: bool                   # the server has /tokenize

    @property
    def hosted_context(self) -> int | None:
        """Tokens one late-chunking request may hold (None: any, the server windows longer documents)."""
        return None if self.jinav3 else HOSTED_MAX_TOKENS


def hosted_info(identity: str | None, model: str | None, where: str) -> ServerInfo:
    """A server without jinav3's ``/info`` (the hosted API, another Jina-compatible server): the hosted API's
    limits; ``identity`` the one the caller gave (default the hub id). ``where``: the server, redacted."""
    return ServerInfo(identity or JINA_MODEL_IDENTITY, f"{model or JINA_API_MODEL} at {where}", model,
                      HOSTED_HIDDEN_SIZE, HOSTED_MAX_TOKENS + 2, HOSTED_MAX_INPUTS, HOSTED_MAX_REQUEST_BYTES,
                      dict(DEFAULT_INSTRUCTIONS), jinav3=False, chunk_spans=False, tokenize=False)


def served_info(data: dict[str, Any], identity: str | None, model: str | None, where: str) -> ServerInfo:
    """jinav3 serve's ``/info`` answer; refused when it serves another model than ``identity`` (if given)."""
    served = str(data["model_identity"])
    if identity is not None and not same_model(served, identity):
        raise RemoteError(f"{where} serves {served!r}, not model_identity={identity!r}", status=None,
                          server_message=None)
    late = data.get("late_chunking") or {}
    instructions = data.get("task_instructions")
    return ServerInfo(
        identity=served, label=f"{data.get('model_label') or served} at {where}",
        request_model=model, hidden_size=int(data["dimensions"]["max"]),
        max_length=int(data["max_input_length"]), max_inputs=int(data.get("max_client_batch_size") or 2048),
        max_request_bytes=int(data.get("max_request_bytes") or HOSTED_MAX_REQUEST_BYTES),
        instructions=dict(instructions) if isinstance(instructions, dict) else dict(DEFAULT_INSTRUCTIONS),
        jinav3=True, chunk_spans=bool(isinstance(late, dict) and late.get("chunker")),
        tokenize=bool(data.get("tokenize", True)))

"""text-embeddings-inference's protocol, on the same server: the routes TEI's clients call.

    POST /embed      {"inputs": str | [str] | token ids, "normalize": true, "truncate": false,
                      "truncation_direction": "right", "prompt_name": null, "dimensions": null}  -> [[float]]
    POST /           the same (huggingface_hub's ``InferenceClient(model=URL).feature_extraction`` posts here)
    POST /embed_all  {"inputs", "truncate", "truncation_direction", "prompt_name"} -> [[[float]]]: every token's
                     state (instruction and <s>, </s> included), for clients that pool themselves

Field names and defaults are TEI's (``router/src/http/types.rs``: EmbedRequest, EmbedAllRequest). Errors on
these routes are TEI's ``{"error", "error_type"}`` (errors.TEI_PATHS). ``prompt_name`` selects the task: the
five task names, ``query`` (retrieval.query), ``passage`` / ``document`` (retrieval.passage); absent, the
library's default, text-matching. The requests go through the same admission, scheduler and metrics as
/v1/embeddings (admission.py), so limits and batching are shared across both protocols.
"""

from __future__ import annotations

from typing import Any, Union

from fastapi import FastAPI, Request
from fastapi.responses import Response

from jinav3.tasks import DEFAULT_TASK, TASKS

from .admission import admitted, run_plan, serialise
from .errors import ApiError
from .schemas import _Body
from .validation import EmbedPlan, ServedModel, check_count, check_dimensions, parse_input, parse_json

# prompt_name -> task: the task names themselves, and the prompt names sentence-transformers users send.
PROMPT_TASKS = {**{task: task for task in TASKS}, "query": "retrieval.query", "passage": "retrieval.passage",
                "document": "retrieval.passage"}
DIRECTIONS = ("right", "left")  # TEI also takes "Right", "Left"


class EmbedRequest(_Body):
    """POST /embed and POST / (TEI's EmbedRequest); unknown fields (huggingface_hub's encoding_format) are ignored,
    as TEI ignores them."""

    inputs: Any
    normalize: bool = True
    truncate: Union[bool, None] = None  # absent: --auto-truncate in TEI; this server does not truncate unasked
    truncation_direction: str = "right"
    prompt_name: Union[str, None] = None
    dimensions: Union[int, None] = None


class EmbedAllRequest(_Body):
    """POST /embed_all (TEI's EmbedAllRequest)."""

    inputs: Any
    truncate: Union[bool, None] = None
    truncation_direction: str = "right"
    prompt_name: Union[str, None] = None


def prompt_task(prompt_name: str | None) -> str:
    if prompt_name is None:
        return DEFAULT_TASK
    if prompt_name not in PROMPT_TASKS:
        raise ApiError.invalid("prompt_name", f"unknown prompt {prompt_name!r}; use one of {', '.join(PROMPT_TASKS)} "
                                              f"(or leave it out for {DEFAULT_TASK})")
    return PROMPT_TASKS[prompt_name]


def plan_tei(raw: bytes, served: ServedModel, max_inputs: int, all_tokens: bool = False) -> EmbedPlan:
    """A TEI body -> the same EmbedPlan /v1/embeddings runs (400 ``Empty`` for no inputs, as TEI answers)."""
    request: EmbedRequest | EmbedAllRequest
    request = parse_json(EmbedAllRequest, raw) if all_tokens else parse_json(EmbedRequest, raw)
    task = prompt_task(request.prompt_name)
    direction = request.truncation_direction.lower()
    if direction not in DIRECTIONS:
        raise ApiError.invalid("truncation_direction", f"must be one of {', '.join(DIRECTIONS)}, "
                                                       f"got {request.truncation_direction!r}")
    if request.inputs == []:
        raise ApiError(400, "inputs: cannot be empty; send a string or a list of them", param="inputs", code="empty")
    kind, items = parse_input(request.inputs, served.vocab_size, "inputs")
    check_count(len(items), max_inputs, "inputs")
    if isinstance(request, EmbedAllRequest):
        dimensions, normalize, options = None, False, {"all_tokens": True}
    else:
        dimensions, normalize, options = check_dimensions(request.dimensions, served.hidden_size), request.normalize, {}
    return EmbedPlan(kind, items, task, dimensions, normalize, bool(request.truncate), ("float",), False,
                     served.names[0], options, direction, "inputs")


def add_tei_routes(app: FastAPI, host: Any, max_client_batch_size: int) -> None:
    """TEI's routes on ``app``; ``host``: app.ModelHost."""

    async def answer(request: Request, all_tokens: bool) -> Response:
        serving = host.require_ready()
        raw = await request.body()  # before admission, as /v1/embeddings: a stalled upload holds no slot
        with admitted(host):
            plan = plan_tei(raw, serving.served, max_client_batch_size, all_tokens)
            ran = await run_plan(request, serving, plan)
            if ran is None:
                return Response(status_code=499)  # the client left; nobody reads this
        vectors = ran.result.vectors
        floats = sum(v.size for v in vectors) if all_tokens else vectors.size
        body = [v.tolist() for v in vectors]
        return Response(await serialise(body, floats), media_type="application/json", headers=ran.headers())

    @app.post("/embed")
    async def embed(request: Request) -> Response:
        """text-embeddings-inference's /embed: one vector per input, a list of lists."""
        return await answer(request, all_tokens=False)

    @app.post("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        """What huggingface_hub's InferenceClient(model=URL).feature_extraction posts to: /embed."""
        return await answer(request, all_tokens=False)

    @app.post("/embed_all")
    async def embed_all(request: Request) -> Response:
        """text-embeddings-inference's /embed_all: every token's state per input, unnormalised."""
        return await answer(request, all_tokens=True)


def tei_info(served: ServedModel) -> dict:
    """/info's fields in TEI's names (``Info`` in TEI's router/src/lib.rs) that jinav3's own /info lacks."""
    return {"served_model_name": served.names[0], "model_type": {"embedding": {"pooling": "mean"}},
            "max_batch_requests": None, "tokenization_workers": 1, "sha": None, "docker_label": None,
            "prompt_names": PROMPT_TASKS}

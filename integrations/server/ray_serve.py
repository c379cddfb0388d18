"""``jinav3 serve --ray``: the same server as N replicas on Ray Serve, behind one HTTP address.

    from ray import serve
    from jinav3.integrations.server.ray_serve import build_app
    serve.run(build_app("jinaai/jina-embeddings-v3", replicas=2, num_gpus_per_replica=1), route_prefix="/")

or in a Serve config file (KubeRay's RayService): ``import_path: jinav3.integrations.server.ray_serve:app_builder``
with ``args: {model: ..., replicas: 2}`` (the keywords of ``build_app``).

Two deployments. ``JinaV3Replica`` (N of them, or autoscaled) each owns a model and runs ``create_app`` in
process: the same routes, dynamic batching, limits, auth and metrics as one ``jinav3 serve``. ``JinaV3Ingress``
(no CPU of its own) takes every HTTP request from Serve's proxy and forwards it to a replica; when the replica
dies on it (Serve restarts it), the request is answered 503 with Retry-After, in the route's error shape,
instead of the 500 Serve's proxy gives. The API key is read by each replica from the variable named by
``api_key_env`` in its own environment: it never travels as an argument.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from jinav3.errors import install_hint

log = logging.getLogger("jinav3.server")

APP_NAME = "jinav3"
RETRY_AFTER_S = "1"  # a dead replica is replaced in seconds; the other replicas answer meanwhile


def _serve() -> Any:
    try:
        from ray import serve
    except ImportError as error:
        raise ImportError(f"jinav3 serve --ray needs Ray Serve: {install_hint('ray')} ({error})") from error
    return serve


def build_app(model: str, *, replicas: int = 1, min_replicas: int | None = None, max_replicas: int | None = None,
              target_ongoing_requests: float | None = None, num_gpus_per_replica: float = 0,
              num_cpus_per_replica: float = 1, device: str = "auto", dtype: str = "auto",
              api_key_env: str | None = None, served_model_names: Sequence[str] = (), **limits: Any) -> Any:
    """The Serve application: ``replicas`` replicas of ``model`` (or autoscaling between ``min_replicas`` and
    ``max_replicas``, aiming at ``target_ongoing_requests`` per replica) behind one ingress. ``limits``: the
    ``create_app`` limits (max_batch_tokens, max_client_batch_size, max_concurrent_requests, ...), per replica."""
    serve = _serve()
    from .app import Limits  # checks the limits here, before a replica starts

    checked = Limits(**limits).checked()
    scaling = _scaling(replicas, min_replicas, max_replicas, target_ongoing_requests)
    replica = serve.deployment(JinaV3Replica, name="JinaV3Replica").options(
        **scaling, max_ongoing_requests=checked.max_concurrent_requests,  # the replica's own 429 applies first
        ray_actor_options={"num_cpus": num_cpus_per_replica, "num_gpus": num_gpus_per_replica},
        health_check_period_s=5)
    ingress = serve.deployment(serve.ingress()(JinaV3Ingress), name="JinaV3Ingress").options(
        ray_actor_options={"num_cpus": 0}, max_ongoing_requests=100_000)
    settings = {"model": str(model), "device": device, "dtype": dtype, "api_key_env": api_key_env,
                "served_model_names": list(served_model_names), "limits": limits}
    return ingress.bind(replica.bind(settings))


def app_builder(args: dict) -> Any:
    """A Serve config file's ``import_path`` (``args``: build_app's keywords, ``model`` required)."""
    args = dict(args)
    if "model" not in args:
        raise ValueError("model: required (a hub id or a folder every Ray node can read)")
    return build_app(args.pop("model"), **args)


def _scaling(replicas: int, min_replicas: int | None, max_replicas: int | None,
             target: float | None) -> dict[str, Any]:
    """Serve's num_replicas, or its autoscaling_config when any autoscaling bound is given."""
    if min_replicas is None and max_replicas is None and target is None:
        return {"num_replicas": replicas}
    low = replicas if min_replicas is None else min_replicas
    high = max(low, replicas) if max_replicas is None else max_replicas
    if not 0 <= low <= high or high < 1:
        raise ValueError(f"min_replicas/max_replicas: need 0 <= min ({low}) <= max ({high}) and max >= 1")
    config: dict[str, Any] = {"min_replicas": low, "max_replicas": high, "initial_replicas": max(low, 1)}
    if target is not None:
        if not target > 0:
            raise ValueError(f"target_ongoing_requests: must be a positive number, got {target!r}")
        config["target_ongoing_requests"] = target
    return {"autoscaling_config": config}


# ============================================================================================ deployments
class JinaV3Replica:
    """One model and its scheduler: ``create_app`` run in process on each forwarded request."""

    def __init__(self, settings: dict):
        import httpx

        from jinav3 import Encoder

        from .app import create_app

        limits = dict(settings["limits"])
        encoder = Encoder.from_pretrained(settings["model"], device=settings["device"], dtype=settings["dtype"],
                                          max_tokens_per_batch=limits.get("max_batch_tokens"))
        encoder.encode(["warm-up"])  # the first call pays one-off costs: not a client's
        api_key = _read_key(settings["api_key_env"])
        self.app = create_app(encoder, api_key=api_key, served_model_names=settings["served_model_names"],
                              aliases=[settings["model"]], **limits)
        self.app.state.host.start()  # the app's lifespan, run here: no ASGI server calls it in a replica
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://replica",
                                        timeout=None)
        self.pid = str(os.getpid())

    async def forward(self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One HTTP request through this replica's app: (status, headers, body)."""
        kept = [(k, v) for k, v in headers if k.lower() not in (b"host", b"content-length", b"transfer-encoding")]
        response = await self.client.request(method, path, params=query.decode("latin-1") or None, headers=kept,
                                             content=body)
        out = [(k, v) for k, v in response.headers.raw if k.lower() not in (b"content-length", b"transfer-encoding")]
        return response.status_code, [*out, (b"x-jinav3-replica", self.pid.encode())], response.content

    def check_health(self) -> None:
        if self.app.state.host.serving is None:
            raise RuntimeError("the model is not loaded")

    def __del__(self) -> None:  # Serve stops a replica: finish what is queued
        host = getattr(getattr(self, "app", None), "state", None)
        serving = getattr(getattr(host, "host", None), "serving", None)
        if serving is not None:
            serving.batcher.close(timeout=30)


class JinaV3Ingress:
    """Every HTTP request, forwarded to a replica; a replica dying under it is a 503 with Retry-After."""

    def __init__(self, replica: Any):
        self.replica = replica

    def __serve_build_asgi_app__(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        from .errors import body_for

        async def forward(request: Request) -> Response:
            body = await request.body()
            try:
                status, headers, content = await self.replica.forward.remote(
                    request.method, request.url.path, request.url.query.encode("latin-1"), request.headers.raw, body)
            except Exception as error:  # noqa: BLE001 (sorted below: a dead replica, back-pressure, or a fault)
                status, message, code = _unavailable(error)
                return JSONResponse(body_for(request.url.path, status, message, code=code), status_code=status,
                                    headers={"Retry-After": RETRY_AFTER_S} if status != 500 else None)
            response = Response(content, status_code=status)
            response.raw_headers = [*headers, (b"content-length", str(len(content)).encode())]
            return response

        methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
        return Starlette(routes=[Route("/", forward, methods=methods), Route("/{path:path}", forward, methods=methods)])


def _unavailable(error: Exception) -> tuple[int, str, str]:
    """(status, message, code) for a forwarding failure: 503 when the replica is gone or none is up, 429 for Serve's
    back-pressure, else 500 (logged)."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

    if isinstance(error, (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)):
        log.warning("a replica was lost during a request: %s", type(error).__name__)
        return 503, "the replica answering this request stopped; Serve is replacing it, retry shortly", \
            "replica_unavailable"
    if isinstance(error, BackPressureError):
        return 429, "every replica is at its limit; retry shortly", "overloaded"
    log.error("forwarding failed: %s: %s", type(error).__name__, error)
    return 500, f"internal error: {type(error).__name__}", "internal_error"


def _read_key(variable: str | None) -> str | None:
    if not variable:
        return None
    key = os.environ.get(variable, "").strip()
    if not key:
        raise RuntimeError(f"api_key_env: ${variable} is not set on this Ray node; set it in the nodes' environment "
                           "(or the application's runtime_env)")
    return key


# ============================================================================================ jinav3 serve --ray
def run_command(args: Any, model: str, say: Callable[[str], None]) -> int:
    """``jinav3 serve --ray``: start a local Ray cluster (or join ``--ray-address``), run the application on
    ``--host``/``--port`` until SIGTERM/SIGINT, then delete it, and stop the cluster if this command started it.
    ``say`` tells the user where it serves. 0 after a graceful stop."""
    import signal
    import threading

    import ray

    serve = _serve()
    application = build_app(
        model, replicas=args.replicas, min_replicas=args.min_replicas, max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests, num_gpus_per_replica=args.num_gpus_per_replica,
        num_cpus_per_replica=args.num_cpus_per_replica, device=args.device, dtype=args.dtype,
        api_key_env=args.api_key_env, served_model_names=args.served_model_name, **limits_of(args))
    own_cluster = not args.ray_address  # "local": a new cluster of this machine, whatever $RAY_ADDRESS says
    ray.init(address=args.ray_address or "local", include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=args.log_level == "debug")
    stop = threading.Event()  # after ray.init, whose own SIGTERM handler would end the process uncleanly
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(application, name=APP_NAME, route_prefix="/")
        shown = f"[{args.host}]" if ":" in args.host else args.host
        say(f"jinav3: serving on http://{shown}:{args.port} through Ray Serve ({_replicas_shown(args)}); SIGTERM or "
            "Ctrl-C stops it")
        stop.wait()
    finally:
        if own_cluster:
            serve.shutdown()
            ray.shutdown()
        else:
            serve.delete(APP_NAME)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def limits_of(args: Any) -> dict[str, Any]:
    """The create_app limits of the parsed ``jinav3 serve`` flags."""
    return {"max_batch_tokens": args.max_batch_tokens, "latency_batch_tokens": args.latency_batch_tokens,
            "max_client_batch_size": args.max_client_batch_size,
            "max_concurrent_requests": args.max_concurrent_requests, "max_request_bytes": args.max_request_bytes,
            "body_timeout_s": args.body_timeout}


def _replicas_shown(args: Any) -> str:
    if args.min_replicas is None and args.max_replicas is None and args.target_ongoing_requests is None:
        return f"{args.replicas} replica{'s' if args.replicas != 1 else ''}"
    return f"autoscaling {args.min_replicas or args.replicas}..{args.max_replicas or args.replicas} replicas"

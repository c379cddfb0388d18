"""``jinav3 serve``: the flags (text-embeddings-inference's names, and its own spellings as aliases: --model-id,
--hostname, --payload-limit), each also read from ``JINAV3_<FLAG>`` (environment.py), the API key, uvicorn,
signals.

Importable without the server extra, so the command line can list ``serve`` (and say how to
install it) on a machine that lacks fastapi and uvicorn.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jinav3.errors import install_hint
from jinav3.integrations.server import environment
from jinav3.integrations.stores.uri import check_key_variable

from .errors import CLIError, UsageError, setting_up
from .options import check_model_options, model_choice, positive

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
MODEL_ENV = "JINAV3_MODEL"


def add_serve_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``jinav3`` command line's sub-commands (``handler=cmd_serve``)."""
    p = subparsers.add_parser(
        "serve", help="serve embeddings over HTTP (Jina Embeddings API and OpenAI compatible)",
        description="Serve the model on /v1/embeddings for Jina and OpenAI clients, with dynamic batching "
                    "across requests; also /tokenize, /health, /info and /metrics (Prometheus).")
    add_serve_arguments(p)
    p.set_defaults(handler=cmd_serve)
    return p


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--model-id", metavar="ID|DIR",
                   help="hub id or local folder (default: jinaai/jina-embeddings-v3)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default="auto", help="auto (bfloat16 on CUDA, else float32), float32, bfloat16, float16")
    p.add_argument("--host", "--hostname", default=DEFAULT_HOST,
                   help="address to bind (default: %(default)s; 0.0.0.0 for all)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port (default: %(default)s)")
    p.add_argument("--served-model-name", action=environment.ReplaceDefault, default=[], metavar="NAME",
                   help="a name clients may send as `model` (repeatable, or comma-separated in the variable; the "
                        "first is answered with); "
                        "jina-embeddings-v3 and the model's own names are always accepted")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--api-key-env", metavar="NAME", help="environment variable holding the API key clients must "
                                                           "send as 'Authorization: Bearer <key>'")
    key.add_argument("--api-key-file", metavar="PATH",
                     help="file holding that API key (surrounding whitespace ignored)")
    p.add_argument("--max-batch-tokens", type=positive, metavar="N",
                   help="tokens per forward pass, across requests (default: 2048 on the CPU; else the model's "
                        "budget per forward pass, 65536 on CUDA)")
    p.add_argument("--latency-batch-tokens", type=positive, metavar="N",
                   help="while short requests keep arriving, a long one adds at most N tokens to a pass, so a "
                        "query waits behind at most N tokens of bulk work (default: 256 on the CPU, 8192 else; "
                        "at most --max-batch-tokens)")
    p.add_argument("--max-client-batch-size", type=positive, default=2048, metavar="N",
                   help="inputs per request, 413 beyond (default: %(default)s)")
    p.add_argument("--max-concurrent-requests", type=positive, default=512, metavar="N",
                   help="requests admitted at once, 429 beyond (default: %(default)s)")
    p.add_argument("--max-request-bytes", "--payload-limit", type=positive, default=8 * 2**20, metavar="N",
                   help="request body limit, 413 beyond (default: %(default)s, 8 MiB)")
    p.add_argument("--body-timeout", type=_seconds, default=30.0, metavar="SECONDS",
                   help="the whole request body must arrive within this many seconds, 408 beyond; a request "
                        "holds no --max-concurrent-requests slot until it has (default: %(default)g)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="(default: %(default)s)")
    ray = p.add_argument_group("replicas on Ray Serve (needs the ray extra)")
    ray.add_argument("--ray", action="store_true",
                     help="serve through Ray Serve: --replicas copies of the model behind one address, each with "
                          "its own dynamic batching; a replica that dies is restarted")
    ray.add_argument("--ray-address", metavar="ADDRESS",
                     help="join this Ray cluster (ray://host:10001, or auto) instead of starting a local one")
    ray.add_argument("--replicas", type=positive, default=1, metavar="N", help="replicas (default: %(default)s)")
    ray.add_argument("--min-replicas", type=_count, metavar="N", help="autoscaling: at least N replicas")
    ray.add_argument("--max-replicas", type=positive, metavar="N", help="autoscaling: at most N replicas")
    ray.add_argument("--target-ongoing-requests", type=_above_zero, metavar="N",
                     help="autoscaling: requests in flight per replica that Serve aims at")
    ray.add_argument("--num-gpus-per-replica", type=_fraction, default=0.0, metavar="N",
                     help="GPUs each replica takes (a fraction shares one; default: %(default)g)")
    ray.add_argument("--num-cpus-per-replica", type=_fraction, default=1.0, metavar="N",
                     help="CPUs each replica takes (default: %(default)g)")
    environment.read_environment(p)  # last: every flag above also reads JINAV3_<FLAG>


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM/SIGINT; 0 after a graceful stop, 1 if the model failed to load. The address is
    bound first, so a busy port is one error line before the model loads (and nothing can take it meanwhile)."""

    try:
        import uvicorn  # noqa: F401

        from jinav3.integrations.server.app import create_app
    except ImportError as error:
        raise CLIError(f"jinav3 serve needs the server extra: {install_hint('server')} ({error})") from error
    problems = environment.check(args)
    if problems:
        raise UsageError("; ".join(problems))
    api_key = read_api_key(args)
    check_model_options(args)
    model, _ = model_choice(args.model)
    if args.ray:
        return _serve_on_ray(args, model)
    _refuse_ray_options(args)
    sockets = bind(args.host, args.port)

    def load() -> Any:
        from jinav3 import Encoder

        return Encoder.from_pretrained(model, device=args.device, dtype=args.dtype,
                                       max_tokens_per_batch=args.max_batch_tokens)

    failed: list[BaseException] = []
    server_box: list[Any] = []

    def on_load_failure(error: BaseException) -> None:
        failed.append(error)
        if server_box:
            server_box[0].should_exit = True

    app = create_app(load, api_key=api_key, served_model_names=args.served_model_name, aliases=[model],
                     max_batch_tokens=args.max_batch_tokens, latency_batch_tokens=args.latency_batch_tokens,
                     max_client_batch_size=args.max_client_batch_size,
                     max_concurrent_requests=args.max_concurrent_requests, max_request_bytes=args.max_request_bytes,
                     body_timeout_s=args.body_timeout, on_load_failure=on_load_failure)
    run(app, args.host, args.port, args.log_level, server_box, sockets)
    return 1 if failed else 0


def _serve_on_ray(args: argparse.Namespace, model: str) -> int:

    if getattr(args, "api_key_file", None):
        raise UsageError("--api-key-file: with --ray each replica reads the key from a variable; use --api-key-env "
                         "and set it on every Ray node")
    try:
        from jinav3.integrations.server.ray_serve import run_command
    except ImportError as error:
        raise CLIError(f"jinav3 serve --ray needs Ray Serve: {install_hint('ray')} ({error})") from error
    try:
        return run_command(args, model, say=lambda line: print(line, flush=True))
    except ValueError as error:
        raise UsageError(str(error)) from None


def _refuse_ray_options(args: argparse.Namespace) -> None:

    given = [flag for flag, value in (("--ray-address", args.ray_address), ("--min-replicas", args.min_replicas),
                                      ("--max-replicas", args.max_replicas), ("--num-gpus-per-replica",
                                      args.num_gpus_per_replica), ("--target-ongoing-requests",
                                      args.target_ongoing_requests), ("--replicas", args.replicas != 1)) if value]
    if given:
        raise UsageError(f"{', '.join(given)}: only apply with --ray")


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for ``host:port``, one per address it resolves to (as uvicorn binds a name); a port in
    use, an address not of this machine or a name that does not resolve is a UsageError naming them."""

    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as error:
        raise UsageError(f"--host: cannot resolve {host!r} ({error.strerror or error})") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, address in dict.fromkeys((a[0], a[1], a[2], a[4]) for a in addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: rebinding after a restart
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # the IPv4 address gets its own
            sock.bind(address)
            if port == 0:  # the OS chose a port: every address on that one
                port = sock.getsockname()[1]
                break
    except OSError as error:
        for sock in sockets:
            sock.close()
        hint = "; stop what listens there or choose another --port" if error.errno == errno.EADDRINUSE else ""
        raise UsageError(f"--host/--port: cannot listen on {shown}: {error.strerror or error}{hint}") from None
    return sockets


def read_api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key-env or --api-key-file; refused (never echoed) when missing or empty. One given on the
    command line wins over the other's variable (JINAV3_API_KEY_ENV, JINAV3_API_KEY_FILE); both from variables
    is an error."""

    named, filed = getattr(args, "api_key_env", None), getattr(args, "api_key_file", None)
    if named and filed:
        sources = environment.from_environment(named), environment.from_environment(filed)
        if all(sources):
            raise UsageError(f"${sources[0]} and ${sources[1]} are both set; set one of them")
        if sources[0]:
            args.api_key_env = None
        else:
            args.api_key_file = None
    if getattr(args, "api_key_env", None):
        name = args.api_key_env
        with setting_up():
            check_key_variable(name, "--api-key-env")
        if not os.environ.get(name, "").strip():  # a key of blanks is no key (surrounding whitespace is dropped)
            raise UsageError(f"--api-key-env: ${name} is {'empty' if name in os.environ else 'not set'}; "
                             "set it to the API key")
        return os.environ[name].strip()
    if getattr(args, "api_key_file", None):
        try:
            key = Path(args.api_key_file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as error:
            raise UsageError(f"--api-key-file: cannot read {args.api_key_file}: {error.strerror}") from None
        if not key:
            raise UsageError(f"--api-key-file: {args.api_key_file} is empty")
        return key
    return None


def run(app: Any, host: str, port: int, log_level: str = "info", server_box: list | None = None,
        sockets: list[socket.socket] | None = None) -> None:
    """uvicorn on ``host:port`` (``sockets``: already bound there, see bind()) until SIGTERM/SIGINT: it stops
    accepting, answers what is in flight, then the app's shutdown drains the batcher."""
    import uvicorn

    sockets = bind(host, port) if sockets is None else sockets
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on"))
    if server_box is not None:
        server_box.append(server)
    _log_like_uvicorn(log_level)
    bound = sockets[0].getsockname()[1]
    # uvicorn names the address only when it binds it itself
    logging.getLogger("uvicorn.error").info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)",
                                            f"[{host}]" if ":" in host else host, bound)
    with _signals_end_gracefully():
        server.run(sockets=sockets)


def _log_like_uvicorn(log_level: str) -> None:
    """The server's own lines (a model loaded, a body that timed out, a client that left mid-upload) on uvicorn's
    handler at the --log-level given, next to its access log; otherwise only warnings would show."""
    ours, theirs = logging.getLogger("jinav3.server"), logging.getLogger("uvicorn")
    if theirs.handlers and not ours.handlers:
        for handler in theirs.handlers:
            ours.addHandler(handler)
        ours.setLevel(log_level.upper())
        ours.propagate = False  # the command line's handler on "jinav3" would print warnings twice


@contextlib.contextmanager
def _signals_end_gracefully() -> Iterator[None]:
    """uvicorn re-raises the signal that stopped it once it is done, which would end the process with that
    signal (status -15) after a clean shutdown. A no-op handler underneath takes it, so the process exits 0."""
    if sys.platform == "win32" or not _in_main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 < number < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value!r}")
    return number


def _count(value: str) -> int:
    return 0 if value.strip() == "0" else positive(value)


def _above_zero(value: str) -> float:
    number = _fraction(value)
    if number == 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {value!r}")
    return number


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 <= number < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, got {value!r}")
    return number


def _port(value: str) -> int:
    number = positive(value) if value != "0" else 0
    if number > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0 to 65535), got {value!r}")
    return number

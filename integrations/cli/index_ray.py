"""``jinav3 index ... --ray``: the command line's Ray options and the command body (the work is
``jinav3.integrations.ray``, imported only when ``--ray`` is given, so ``jinav3`` runs without Ray)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jinav3.errors import CorpusError, InvalidArgumentError, JinaV3Error, install_hint
from jinav3.integrations.stores.uri import store_failure

from .errors import CLIError, UsageError, setting_up, warn  # bad rows named as without --ray
from .options import check_model_options, model_choice, positive, store_of


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``jinav3 index``'s Ray options."""
    group = parser.add_argument_group("indexing on a Ray cluster (pip install \"jinav3[ray]\")")
    group.add_argument("--ray", action="store_true",
                       help="embed and write in parallel with Ray Data workers (into a store server, not a local file)")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="the Ray cluster: 'auto' (the one this machine belongs to), ray://HOST:10001; "
                            "default: $RAY_ADDRESS, else a local cluster on this machine")
    group.add_argument("--workers", type=positive, default=1, metavar="N", help="embedding actors (default: 1)")
    group.add_argument("--gpus-per-worker", type=_non_negative, default=0, metavar="G",
                       help="GPUs per actor (default: 0, CPU workers)")
    group.add_argument("--cpus-per-worker", type=_non_negative, default=1, metavar="C",
                       help="CPUs per actor (default: 1; torch uses that many threads)")


def _non_negative(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {value!r}") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {value!r}")
    return number


def cmd_index_ray(args: argparse.Namespace) -> int:
    """``jinav3 index ... --ray``: the same corpus, checks, ids and payloads as without ``--ray``."""
    try:
        import ray

        from jinav3.integrations.ray import files_dataset, index_dataset, list_files, refuse_embedded
        from jinav3.integrations.ray.plan import DEFAULT_BATCH_SIZE
    except ImportError as error:
        raise CLIError(f"--ray needs Ray Data: {install_hint('ray')} ({error})") from error

    uri = store_of(args)
    try:
        refuse_embedded(uri)
    except InvalidArgumentError as e:
        raise UsageError(f"--ray: {str(e).removeprefix('store: ')}") from None
    if args.chunk_size is not None and (args.chunker != "tokens" or not args.late_chunking):
        raise UsageError("--chunk-size: only applies with --late-chunking --chunker tokens")
    if args.chunker == "tokens" and args.late_chunking and args.chunk_size is None:
        raise UsageError("--chunker tokens: give --chunk-size N (tokens per chunk)")
    check_model_options(args)
    files = list_files(args.corpus, warn=warn)
    if not ray.is_initialized():  # before the first Dataset, which would start a cluster of Ray's defaults
        address = args.ray_address or os.environ.get("RAY_ADDRESS") or None
        ray.init(address=address, include_dashboard=False, log_to_driver=not args.quiet,
                 logging_level=logging.ERROR if args.quiet else logging.WARNING)
    try:
        with ray_console(args.quiet), setting_up():
            ds = files_dataset(files, id_field=args.id_field, text_field=args.text_field)
            report = index_dataset(ds, store=uri, model=model_choice(args.model)[0], collection=args.collection,
                                   dimensions=args.dimensions, workers=args.workers,
                                   gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                                   late_chunking=args.late_chunking, chunker=args.chunker, chunk_size=args.chunk_size,
                                   batch_size=args.batch_size or DEFAULT_BATCH_SIZE, strict=args.strict,
                                   id_field=args.id_field, text_field=args.text_field, device=args.device,
                                   dtype=args.dtype, warn=warn,
                                   hybrid=True if args.hybrid else None)
    except (UsageError, KeyboardInterrupt):
        raise
    except CorpusError as error:
        raise CLIError(str(error)) from error
    except Exception as error:
        cause = _root_cause(error)
        if isinstance(cause, CorpusError):
            raise CLIError(str(cause)) from error
        raise store_failure(uri, cause if isinstance(cause, (JinaV3Error, Exception)) else error) from error
    print(report.summary())  # noqa: T201 - the command's output
    return 0


@contextmanager
def ray_console(quiet: bool) -> Iterator[None]:
    """With --quiet, nothing of Ray Data's on the console for the run: no progress (bars on a terminal; elsewhere
    ~90 INFO lines of it) and no log lines below errors; its log file in the Ray session keeps them. Put back
    afterwards (a process may run more jobs). Entered before the first Dataset is made: each keeps the
    DataContext settings it was made with."""
    if not quiet:
        yield
        return
    import ray.data

    context = ray.data.DataContext.get_current()
    consoles = [h for h in logging.getLogger("ray.data").handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    before = context.enable_progress_bars, [h.level for h in consoles]
    context.enable_progress_bars = False
    for handler in consoles:
        handler.setLevel(logging.ERROR)
    try:
        yield
    finally:
        context.enable_progress_bars = before[0]
        for handler, level in zip(consoles, before[1], strict=True):
            handler.setLevel(level)


def _root_cause(error: BaseException) -> Any:
    """The user's exception inside Ray's wrappers (RayTaskError, its ``cause``)."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "cause", None)
        if isinstance(inner, BaseException):
            error = inner
            continue
        if type(error).__module__.startswith("ray") and error.__cause__ is not None:
            error = error.__cause__
            continue
        break
    return error




__all__ = ["add_ray_arguments", "cmd_index_ray"]

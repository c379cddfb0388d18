"""The ``jinav3`` command line: index a corpus into a vector store, search it, convert a checkpoint, serve.

    jinav3 index examples/data/passages.jsonl                 # into qdrant:./jinav3-data/qdrant
    jinav3 search "how do I test a new cream?" --top-k 5
    jinav3 search "tea" --filter lang=zh --json
    jinav3 convert ./jina-embeddings-v3 ./jina-embeddings-v3-native
    jinav3 serve --port 8080
    jinav3 info

One module per command (index, index_ray, search, convert, eval, serve, info); options.py holds what they share,
errors.py how they fail. Store URIs come from the store registry (``jinav3.integrations.stores``):
``qdrant:PATH`` (local mode, the default ``qdrant:./jinav3-data/qdrant``), ``qdrant+http://HOST:PORT``,
``milvus:PATH.db`` (Milvus Lite), ``milvus+http://HOST:PORT``, ``pinecone:INDEX`` (``$PINECONE_API_KEY``). A
server's credentials come from ``--api-key-env NAME`` (the variable holding the key or token) or the URI's
``user:password@``; whatever holds a secret is printed redacted (``root:***@``) and scrubbed from every message.
The model is ``--model``, else ``$JINAV3_MODEL``, else ``jinaai/jina-embeddings-v3``.

Errors are one line on stderr (``jinav3: error: ...``): exit status 2 for a usage error (a bad option
value, found before any work), 1 for a failure of the work; ``JINAV3_DEBUG=1`` prints the traceback
before it. Nothing in the library imports this package: it sits on top (cli -> server, ray, stores -> core).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from jinav3.errors import JinaV3Error
from jinav3.integrations.stores.registry import STORES
from jinav3.secrets import scrub, uri_secrets

from .convert import add_convert_command
from .errors import CLIError, exit_status, explained, one_line
from .eval import add_eval_command
from .index import add_index_command
from .info import add_info_command
from .options import DEBUG_ENV, MODEL_ENV, STORE_FORMS, Parser, api_key_values
from .search import add_search_command
from .serve import add_serve_command

# Client warnings the one-line error already says (a server that cannot be reached, a key sent over http).
CLIENT_NOISE = ("Failed to obtain server version", "Api key is used with an insecure connection")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="jinav3",
        description="Index and search text with jina-embeddings-v3 vectors in Qdrant, Milvus or Pinecone.",
        epilog=f"Store URIs: {STORE_FORMS}. Model: --model, else ${MODEL_ENV}, else jinaai/jina-embeddings-v3. "
               f"Set {DEBUG_ENV}=1 to see tracebacks.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_index_command(commands)
    add_search_command(commands)
    add_convert_command(commands)
    add_eval_command(commands)
    add_serve_command(commands)
    add_info_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (0 on success, 1 for a failed run, 2 for a usage error)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    # Known before parsing, so that even a usage error is scrubbed; the API key joins once the options are read.
    secrets = [secret for item in argv for secret in uri_secrets(item)]
    log = logging.getLogger("jinav3")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("jinav3: %(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    handler.addFilter(scrubbing(secrets))  # retry warnings quote the clients' errors
    log.addHandler(handler)
    try:
        args = build_parser().parse_args(argv)
        secrets += api_key_values(args)
        if not debug:  # for the whole process: qdrant-client warns from a daemon thread, maybe after the run ended
            for noise in CLIENT_NOISE:
                warnings.filterwarnings("ignore", message=noise)
        with warnings.catch_warnings(), client_logs(getattr(args, "store", None), debug, secrets):
            show = warnings.showwarning
            warnings.showwarning = lambda message, *rest: show(scrub(str(message), secrets), *rest)
            return args.handler(args)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 2
    except KeyboardInterrupt:
        print("jinav3: interrupted; run the same command again to resume (what was written is kept, not duplicated)",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # `jinav3 search ... | head`: the reader left, nothing more to say
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a real file (captured in tests)
            pass
        return 141
    except Exception as error:
        report(error, debug, secrets)
        return exit_status(error)
    finally:
        log.removeHandler(handler)


def report(error: Exception, debug: bool, secrets: list[str]) -> None:
    """The error as one line on stderr, after its traceback with JINAV3_DEBUG; scrubbed of secrets either way
    (clients put URLs and credentials in their messages)."""
    if isinstance(error, (CLIError, JinaV3Error)):
        message = explained(error)
    else:
        message = f"{type(error).__name__}: {error}" + ("" if debug else f" (set {DEBUG_ENV}=1 for the traceback)")
    text = "".join(traceback.format_exception(error)) if debug else ""
    sys.stderr.write(scrub(text, secrets) + f"jinav3: error: {one_line(scrub(message, secrets), 2000)}\n")


def scrubbing(secrets: list[str]) -> Callable[[logging.LogRecord], bool]:
    """A logging filter that scrubs each record (message and traceback) of ``secrets``, read at each record."""
    def scrub_record(record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage(), secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, secrets)
        return True

    return scrub_record


@contextmanager
def client_logs(store: str | None, debug: bool, secrets: list[str]) -> Iterator[None]:
    """Some clients log every failed call with its traceback on their own stderr handlers before raising the error
    the CLI reports in one line (pymilvus: ~24 lines; Milvus Lite its start-up failures; the registry's
    ``client_loggers``): silence them for the run, or with JINAV3_DEBUG keep them, scrubbed of secrets. Either
    way put the loggers back as they were."""
    kind = STORES.get((store or "").partition(":")[0].partition("+")[0])
    if kind is None or not kind.client_loggers:
        yield
        return
    try:  # its import configures its loggers: change them after it, not before
        importlib.import_module(kind.client_loggers[0])
    except ImportError:  # opening the store says how to install it
        yield
        return
    family = [logging.getLogger(name) for name in kind.client_loggers]
    family += [logger for name, logger in logging.Logger.manager.loggerDict.items()
               if isinstance(logger, logging.Logger) and name.split(".")[0] in kind.client_loggers
               and logger not in family]
    levels = [logger.level for logger in family]
    scrubber = scrubbing(secrets)
    for logger in family:
        if debug:
            logger.addFilter(scrubber)
        elif logger.level != logging.NOTSET or logger.name in kind.client_loggers:  # the rest inherit the silence
            logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(family, levels, strict=True):
            logger.removeFilter(scrubber)
            logger.setLevel(level)

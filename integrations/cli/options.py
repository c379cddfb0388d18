"""What several commands share: defaults, the option groups (model, server, store), and turning options into
a store URI, an encoder and an open store."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any, NoReturn

from jinav3 import env
from jinav3.integrations.stores.registry import store_forms
from jinav3.integrations.stores.uri import (
    StoreURI,
    check_key_variable,
    key_from_variable,
    parse_store,
    with_credentials,
)

from .errors import UsageError, setting_up

if TYPE_CHECKING:  # the model and the stores are imported when a command needs them, not for --help
    from jinav3.protocol import TextEncoder

DEFAULT_DATA_DIR = "./jinav3-data"
DEFAULT_STORE = "qdrant:./jinav3-data/qdrant"
DEFAULT_COLLECTION = "jinav3"
MODEL_ENV = env.MODEL
DEBUG_ENV = env.DEBUG
PINECONE_KEY_ENV = env.PINECONE_API_KEY
# --server's key when no --server-api-key-env names one: jinav3 serve's, then the Jina API's (for api.jina.ai only)
SERVER_KEY_ENV = (env.SERVER_API_KEY, *env.JINA_API_KEYS)
STORE_FORMS = store_forms()


class Parser(argparse.ArgumentParser):
    """argparse whose errors are UsageErrors: one ``jinav3: error:`` line and exit 2, like every usage error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No prefix matching: --mode must never be read as --model, nor any new flag swallowed by an old one.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def positive(value: str) -> int:
    """The command line's positive-integer option type."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return number


def model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="ID|DIR",
                   help=f"hub id or local folder (default: ${MODEL_ENV}, else jinaai/jina-embeddings-v3)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default="auto",
                   help="auto (bfloat16 on CUDA, else float32), float32, bfloat16, float16")


def server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", metavar="URL",
                   help="embed through this server instead of a local model: jinav3 serve "
                        "(http://127.0.0.1:8080) or the Jina API (https://api.jina.ai); not with --model, "
                        "--device or --dtype")
    p.add_argument("--server-api-key-env", metavar="NAME",
                   help="environment variable holding --server's API key (default: $JINAV3_API_KEY; for "
                        "api.jina.ai also $JINA_API_KEY, $JINAAI_API_KEY; with a local store --api-key-env "
                        "names it too)")


def store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=DEFAULT_STORE, metavar="URI", help=f"{STORE_FORMS} (default: %(default)s)")
    p.add_argument("--collection", default=DEFAULT_COLLECTION, metavar="NAME",
                   help="collection (Qdrant, Milvus) or namespace (Pinecone) (default: %(default)s)")
    p.add_argument("--dimensions", type=positive, metavar="N",
                   help="Matryoshka size 1..1024 (index default: all; search default: the collection's)")
    p.add_argument("--api-key-env", metavar="NAME",
                   help="environment variable holding the API key or token of a server or Pinecone (Qdrant "
                        f"api key, Milvus token; default for Pinecone: {PINECONE_KEY_ENV}), so no secret is "
                        "typed on the command line; user:password@ in a server URI works too")


def api_key_values(args: argparse.Namespace) -> list[str]:
    """The values of the API key variables this run may use, to scrub from what it prints."""
    names = (getattr(args, "api_key_env", None), PINECONE_KEY_ENV, getattr(args, "server_api_key_env", None),
             *SERVER_KEY_ENV)
    return [os.environ[name] for name in names if name and os.environ.get(name)]


def store_of(args: argparse.Namespace) -> StoreURI:
    """The store of ``--store`` with its credentials (``--api-key-env``, or the kind's own variable)."""
    with setting_up():
        store = parse_store(args.store)
        if getattr(args, "server", None) and store.mode == "local" and not getattr(args, "server_api_key_env", None):
            return with_credentials(store, None, "--api-key-env")  # --api-key-env is then the server's key
        return with_credentials(store, args.api_key_env, "--api-key-env")


def check_model_options(args: argparse.Namespace) -> None:
    """--device and --dtype checked before a corpus is read or a model loaded (with --server: that none is given,
    the server has chosen them)."""
    if getattr(args, "server", None):
        given = [flag for flag, value in (("--model", args.model), ("--device", args.device != "auto"),
                                          ("--dtype", args.dtype != "auto")) if value]
        if given:
            raise UsageError(f"--server: the server chooses the model, device and dtype; drop {', '.join(given)}")
        with setting_up():
            server_key_variable(args)
        return
    from jinav3.devices import pick_device, pick_dtype

    with setting_up():
        pick_dtype(args.dtype, pick_device(args.device))


def server_key_variable(args: argparse.Namespace) -> str | None:
    """The variable holding --server's API key: NAME of --server-api-key-env; else, with a local store (which
    takes no key), NAME of --api-key-env; else $JINAV3_API_KEY (and for api.jina.ai $JINA_API_KEY,
    $JINAAI_API_KEY), the first one set; else none. A named variable that is not set or empty is refused."""
    variable = args.server_api_key_env
    if variable is None and args.api_key_env and store_of_mode(args.store) == "local":
        variable = args.api_key_env
    if variable is not None:
        option = "--server-api-key-env" if args.server_api_key_env else "--api-key-env"
        return key_variable(variable, option)
    hosted = "api.jina.ai" in args.server
    return next((name for name in (SERVER_KEY_ENV if hosted else SERVER_KEY_ENV[:1]) if os.environ.get(name)), None)


def store_of_mode(uri: str) -> str:
    with setting_up():
        return parse_store(uri).mode


def key_variable(variable: str, option: str) -> str:
    """``variable``, checked to name an environment variable that is set (the key itself is never shown)."""
    with setting_up():
        check_key_variable(variable, option)
        key_from_variable(variable, option)
    return variable


def model_choice(model: str | None) -> tuple[str, str]:
    """(model, where the choice came from)."""
    from jinav3.identity import DEFAULT_MODEL

    if model:
        return model, "--model"
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV], f"${MODEL_ENV}"
    return DEFAULT_MODEL, "default"


def load_encoder(args: argparse.Namespace) -> TextEncoder:
    if getattr(args, "server", None):  # the model is the server's: no torch model in this process
        from jinav3 import RemoteEncoder

        # The key by its variable, so that a refused key is reported by the variable's name (never its value).
        variable = server_key_variable(args)
        return RemoteEncoder(args.server, api_key_env=variable) if variable else RemoteEncoder(args.server)
    from jinav3 import Encoder

    model, _ = model_choice(args.model)
    return Encoder.from_pretrained(model, device=args.device, dtype=args.dtype)

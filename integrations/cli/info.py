"""``jinav3 info``: versions, device, model resolution and data locations."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from jinav3.integrations.stores.registry import STORES
from jinav3.integrations.stores.uri import StoreURI, open_collection

from .errors import one_line
from .options import (
    DEFAULT_COLLECTION,
    DEFAULT_DATA_DIR,
    DEFAULT_STORE,
    MODEL_ENV,
    SERVER_KEY_ENV,
    STORE_FORMS,
    check_model_options,
    model_choice,
    model_options,
    store_of,
)

# Packages `info` reports when installed: the core's, the stores' (from the registry), the rest's.
CORE_PACKAGES = ("torch", "transformers", "peft", "tokenizers", "safetensors", "huggingface_hub", "numpy")
OPTIONAL_PACKAGES = (*(package for kind in STORES.values() for package in kind.packages), "haystack-ai",
                     "llama-index-core", "langchain-core", "ray", "pyarrow", "httpx", "fastapi", "uvicorn", "openai")


def add_info_command(commands: Any) -> None:
    p = commands.add_parser("info", help="versions, device, model resolution and data locations",
                            description="Versions, device, model resolution and data locations; with --store, what "
                                        "a collection holds (its model, size, tasks, kind: dense or hybrid, points), "
                                        "read without loading a model.")
    model_options(p)
    p.add_argument("--store", metavar="URI", help=f"also describe a collection in this store: {STORE_FORMS}")
    p.add_argument("--collection", default=DEFAULT_COLLECTION, metavar="NAME",
                   help="the collection (namespace in Pinecone) --store describes (default: %(default)s)")
    p.add_argument("--api-key-env", metavar="NAME", help="environment variable holding the store's API key or token")
    p.set_defaults(handler=cmd_info)


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    import torch
    from huggingface_hub import constants

    from jinav3 import __version__, onednn
    from jinav3.devices import describe_cpu_bf16, pick_device, pick_dtype

    check_model_options(args)
    store = store_of(args) if args.store else None  # a bad --store is a usage error before anything is read
    rows: list[tuple[str, str]] = []

    def section(title: str) -> None:
        rows.append((title, ""))

    def row(key: str, value: str) -> None:
        rows.append(("  " + key, value))

    section("versions")
    row("jinav3", __version__)
    row("python", platform.python_version())
    for name in CORE_PACKAGES:
        row(name, _version(name) or "not installed")
    section("optional clients")
    for name in OPTIONAL_PACKAGES:
        row(name, _version(name) or "not installed")

    section("device")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    row("cuda", f"yes: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)} (torch CUDA {torch.version.cuda})"
        if cuda else f"no (torch built {'with CUDA ' + torch.version.cuda if torch.version.cuda else 'for CPU'})")
    row("mps", "yes" if mps else "no")
    device = pick_device(args.device)
    row(f"device ({args.device})", str(device))
    row(f"dtype ({args.dtype})", str(pick_dtype(args.dtype, device)).removeprefix("torch."))
    row("dtype (auto) on cpu", str(pick_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
        + " (exact vectors; --dtype bfloat16 to trade them for speed)")
    row("cpu bfloat16 matmul", describe_cpu_bf16())
    row("cpu float32 linear layers", onednn.describe())
    row("cpu threads", str(torch.get_num_threads()))

    section("model")
    model, source = model_choice(args.model)
    row("model", f"{model}  (from {source})")
    row(f"${MODEL_ENV}", os.environ.get(MODEL_ENV) or "(unset)")
    path = Path(model).expanduser()
    if path.is_dir():
        layout = _layout_of(path)
        row("resolves to", f"local folder {path.resolve()}{layout}")
    else:
        row("resolves to", "a Hugging Face hub id (not a local folder)")
        row("hub cache", str(constants.HF_HUB_CACHE))
        row("in cache", _in_cache(model))
        row("HF_HUB_OFFLINE", "on (downloads disabled)" if constants.HF_HUB_OFFLINE else "off (downloads allowed)")
        row("HF_ENDPOINT", constants.ENDPOINT)

    section("server (--server)")  # whether a key is there, never the key
    for name in SERVER_KEY_ENV:
        row(f"${name}", "set (value hidden)" if os.environ.get(name) else "(unset)")

    section("data")
    row("data dir", f"{DEFAULT_DATA_DIR}  ({Path(DEFAULT_DATA_DIR).resolve()})")
    row("default store", DEFAULT_STORE)
    row("default collection", DEFAULT_COLLECTION)

    if store is not None:
        section(f"collection ({store.place(args.collection)})")
        rows.extend(("  " + key, value) for key, value in describe_collection(store, args.collection))

    width = max(len(k) for k, v in rows if v) + 2
    for key, value in rows:
        print(f"{key:<{width}}{value}" if value else key)
    return 0


def describe_collection(store: StoreURI, collection: str) -> list[tuple[str, str]]:
    """What a collection holds, read from its signature with no model loaded (a Collection, not a VectorStore)."""
    with open_collection(store, collection, create=False) as opened:
        sig = opened.signature
        return [("model", sig.shown_model), ("dimensions", str(sig.dimensions)),
                ("tasks", f"{sig.passage_task} (index) / {sig.query_task} (search)"),
                ("kind", "hybrid: dense + lexical (BM25); search modes dense, sparse, hybrid (default)" if sig.hybrid
                 else "dense; search mode dense (jinav3 index --hybrid makes a hybrid collection)"),
                ("points", f"{opened.count():,}")]


def _layout_of(path: Path) -> str:
    try:
        from jinav3.checkpoint import layout_of, read_config

        return f" ({layout_of(read_config(path))} layout)"
    except Exception as error:  # info reports, it does not fail
        return f" (not loadable: {one_line(str(error), 200)})"


def _in_cache(model: str) -> str:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
    except Exception:
        return "unknown"
    return f"yes ({Path(found).parent})" if isinstance(found, str) else "no"

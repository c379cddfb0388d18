"""The ``jinav3`` command line: index a corpus into a vector store, search it, convert a checkpoint.

    jinav3 index examples/data/passages.jsonl                 # into qdrant:./jinav3-data/qdrant
    jinav3 search "how do I test a new cream?" --top-k 5
    jinav3 search "tea" --filter lang=zh --json
    jinav3 convert ./jina-embeddings-v3 ./jina-embeddings-v3-native
    jinav3 info

Store URIs: ``qdrant:PATH`` (local mode, the default ``qdrant:./jinav3-data/qdrant``),
``qdrant+http://HOST:PORT``, ``milvus:PATH.db`` (Milvus Lite), ``milvus+http://HOST:PORT``,
``pinecone:INDEX`` (``$PINECONE_API_KEY``). The model is ``--model``, else ``$JINAV3_MODEL``, else
``jinaai/jina-embeddings-v3``.

Errors are one line on stderr (``jinav3: error: ...``) and a non-zero exit; ``JINAV3_DEBUG=1`` shows
the traceback instead. It lives in ``jinav3.integrations`` because it talks to stores, which
``jinav3`` (core) never imports.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = "./jinav3-data"
DEFAULT_STORE = "qdrant:./jinav3-data/qdrant"
DEFAULT_COLLECTION = "jinav3"
MODEL_ENV = "JINAV3_MODEL"
DEBUG_ENV = "JINAV3_DEBUG"
WORK_RETRIES = 5  # retries of a transient store error once the store is open

STORE_FORMS = "qdrant:PATH, qdrant+http://HOST:PORT, milvus:PATH.db, milvus+http://HOST:PORT or pinecone:INDEX"

# Packages `info` reports when installed (distribution name, what it is for).
CORE_PACKAGES = ("torch", "transformers", "peft", "tokenizers", "safetensors", "huggingface_hub", "numpy")
OPTIONAL_PACKAGES = ("qdrant-client", "pymilvus", "milvus-lite", "pinecone", "haystack-ai", "llama-index-core", "pyarrow")


class CLIError(Exception):
    """A failure to report as one line, without a traceback."""


# ============================================================================================ stores
@dataclass(frozen=True)
class StoreURI:
    """A parsed ``--store`` value: ``scheme`` (qdrant, milvus, pinecone), ``mode`` (local, server,
    index) and ``target`` (a path, a URL or an index name)."""

    raw: str
    scheme: str
    mode: str
    target: str


def place(store: StoreURI, collection: str) -> str:
    """``qdrant:./data collection 'docs'`` / ``pinecone:idx namespace 'docs'``: for messages."""
    return f"{store.raw} {'namespace' if store.scheme == 'pinecone' else 'collection'} {collection!r}"


def check_credentials(store: StoreURI) -> None:
    """Fail before loading the model when a store needs a credential that is not set."""
    if store.scheme == "pinecone" and not os.environ.get("PINECONE_API_KEY"):
        raise CLIError(f"store {store.raw}: set PINECONE_API_KEY to your Pinecone API key")


def parse_store(uri: str) -> StoreURI:
    """Parse a store URI; raise CLIError naming the accepted forms for anything else."""
    raw = uri
    scheme, sep, rest = uri.partition(":")
    if not sep or not rest:
        raise CLIError(f"store: {raw!r} is not a store URI; use {STORE_FORMS}")
    base, plus, transport = scheme.partition("+")
    if base not in ("qdrant", "milvus", "pinecone"):
        raise CLIError(f"store: unknown scheme {scheme!r} in {raw!r}; use {STORE_FORMS}")
    if plus:
        if base == "pinecone" or transport not in ("http", "https") or not rest.startswith("//") or len(rest) <= 2:
            raise CLIError(f"store: unknown scheme {scheme!r} in {raw!r}; use {STORE_FORMS}")
        return StoreURI(raw, base, "server", f"{transport}:{rest}")
    if base == "pinecone":
        return StoreURI(raw, base, "index", rest)
    if rest.startswith("//"):
        raise CLIError(f"store: {raw!r}: for a server write {base}+http:{rest}; for a local path write {base}:PATH")
    if base == "milvus" and not rest.endswith(".db"):
        raise CLIError(f"store: {raw!r}: Milvus Lite needs a file name ending in .db, e.g. milvus:./jinav3-data/milvus.db")
    return StoreURI(raw, base, "local", rest)


def open_store(store: StoreURI, encoder, collection: str, dimensions: int | None, create: bool = True):
    """The store helper for ``store`` (imports its client only now); ``create=False`` refuses a missing
    collection with a hint to index first."""
    # Open without retries, so a wrong or unreachable address fails at once; retry transient errors
    # of the work itself (see open_store's end).
    kwargs: dict[str, Any] = {"collection": collection, "create": create, "retries": 0}
    if dimensions is not None:
        kwargs["dimensions"] = dimensions
    try:
        if store.scheme == "qdrant":
            from .qdrant import QdrantStore as Store

            if store.mode == "local":
                Path(store.target).expanduser().mkdir(parents=True, exist_ok=True)
                kwargs["path"] = str(Path(store.target).expanduser())
            else:
                kwargs["url"] = store.target
        elif store.scheme == "milvus":
            from .milvus import MilvusStore as Store

            if store.mode == "local":
                Path(store.target).expanduser().parent.mkdir(parents=True, exist_ok=True)
                kwargs["uri"] = str(Path(store.target).expanduser())
            else:
                kwargs["uri"] = store.target
        else:
            from .pinecone import PineconeStore as Store

            # the API key comes from $PINECONE_API_KEY; the SDK reads $PINECONE_CONTROLLER_HOST itself
            kwargs["index"] = store.target
            kwargs["namespace"] = kwargs.pop("collection")
    except ImportError as error:
        extra = {"qdrant": "qdrant", "milvus": "milvus", "pinecone": "pinecone"}[store.scheme]
        raise CLIError(f"store: {store.raw} needs the {store.scheme} client: pip install \"jinav3[{extra}]\" "
                       f"({error})") from error
    try:
        opened = Store(encoder, **kwargs)
        opened.retries = WORK_RETRIES
        return opened
    except Exception as error:
        from jinav3.errors import SignatureMismatchError, StoreError

        if not create and isinstance(error, StoreError) and not isinstance(error, SignatureMismatchError) \
                and "does not exist" in str(error):
            missing = f"index {store.target!r}" if store.scheme == "pinecone" else f"collection {collection!r}"
            raise CLIError(f"store {store.raw}: {missing} does not exist; index a corpus into it first: "
                           f"jinav3 index CORPUS --store {store.raw} --collection {collection}") from error
        raise store_failure(store, error) from error


# ============================================================================================ helpers
def model_choice(model: str | None) -> tuple[str, str]:
    """(model, where the choice came from)."""
    from jinav3.checkpoint import DEFAULT_MODEL

    if model:
        return model, "--model"
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV], f"${MODEL_ENV}"
    return DEFAULT_MODEL, "default"


def load_encoder(args):
    from jinav3 import Encoder

    model, _ = model_choice(args.model)
    return Encoder.from_pretrained(model, device=args.device, dtype=args.dtype)


def one_line(text: str, limit: int = 600) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def store_failure(store: StoreURI, error: Exception) -> CLIError:
    from jinav3.errors import JinaV3Error

    if isinstance(error, JinaV3Error):
        return CLIError(str(error))
    return CLIError(f"store {store.raw}: {type(error).__name__}: {error}")


def count_tokens(encoder, texts: list[str]) -> int:
    encoded = encoder.tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)
    return sum(len(ids) for ids in encoded["input_ids"])


def _rate(amount: float, seconds: float) -> str:
    return f"{amount / seconds:,.1f}" if seconds > 0 else "-"


class IndexProgress:
    """Wraps the Encoder for a store's ``add``: counts documents, chunks and tokens as each batch is
    embedded, and moves the progress bar (documents/s, tokens/s). Everything else is the encoder's."""

    def __init__(self, encoder, total: int, quiet: bool):
        from tqdm.auto import tqdm

        self._encoder = encoder
        self.documents = self.chunks = self.tokens = 0
        self.started = time.perf_counter()
        # disable=None: draw only on a terminal, so logs and pipes stay clean
        self.bar = tqdm(total=total, unit="doc", desc="Indexing", disable=True if quiet else None,
                        file=sys.stderr, dynamic_ncols=True)

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    def encode(self, texts, *args, **kwargs):
        vectors = self._encoder.encode(texts, *args, **kwargs)
        self._step([texts] if isinstance(texts, str) else list(texts), 1 if isinstance(texts, str) else len(vectors))
        return vectors

    def late_chunk_documents(self, documents, *args, **kwargs):
        chunked = self._encoder.late_chunk_documents(documents, *args, **kwargs)
        self._step(list(documents), sum(len(chunks) for chunks in chunked))
        return chunked

    def _step(self, texts: list[str], chunks: int) -> None:
        self.documents += len(texts)
        self.chunks += chunks
        self.tokens += count_tokens(self._encoder, texts)
        self.bar.update(len(texts))
        self.bar.set_postfix_str(f"{_rate(self.tokens, time.perf_counter() - self.started)} tokens/s", refresh=False)

    def close(self) -> float:
        self.bar.close()
        return time.perf_counter() - self.started


# ============================================================================================ commands
def cmd_index(args) -> int:
    from .corpus import read_corpus

    store = parse_store(args.store)
    check_credentials(store)
    if args.chunk_size is not None and (args.chunker != "tokens" or not args.late_chunking):
        raise CLIError("--chunk-size: only applies with --late-chunking --chunker tokens")
    if args.chunker == "tokens" and args.late_chunking and args.chunk_size is None:
        raise CLIError("--chunker tokens: give --chunk-size N (tokens per chunk)")
    records = read_corpus(args.corpus, id_field=args.id_field, text_field=args.text_field, strict=args.strict)
    if not records:
        raise CLIError(f"corpus: {args.corpus!r} holds no document with text in field {args.text_field!r}")
    if not args.quiet and sys.stderr.isatty():  # loading the real model takes a while: say what is going on
        print(f"jinav3: {len(records)} documents read; loading {model_choice(args.model)[0]} ...", file=sys.stderr)
    encoder = load_encoder(args)
    progress = IndexProgress(encoder, len(records), args.quiet)
    target = open_store(store, progress, args.collection, args.dimensions)

    options: dict[str, Any] = {}
    if args.late_chunking:
        options.update(late_chunking=True, chunker=args.chunker)
        if args.chunk_size is not None:
            options["chunk_size"] = args.chunk_size
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    try:
        target.add(records, **options)
        seconds = progress.close()
        try:
            total = target.count()
        except Exception:  # the summary must not fail the run
            total = None
    except KeyboardInterrupt:
        progress.close()
        print(f"jinav3: interrupted after embedding {progress.documents} of {len(records)} documents; run the same "
              "command again to resume (what was written is overwritten, not duplicated)", file=sys.stderr)
        return 130
    except Exception as error:
        progress.close()
        raise store_failure(store, error) from error
    finally:
        _close(target)
    held = f"; it now holds {total} entries" if total is not None else ""
    print(f"Indexed {progress.documents} documents ({progress.chunks} chunks, {progress.tokens:,} tokens) in "
          f"{seconds:.1f} s ({_rate(progress.documents, seconds)} documents/s, {_rate(progress.tokens, seconds)} "
          f"tokens/s) into {place(store, args.collection)}{held}")
    return 0


def _close(target) -> None:
    try:
        target.close()
    except Exception:  # closing must not turn a success into a failure
        pass


def parse_filters(items: list[str]) -> dict[str, Any]:
    """``key=value`` (a string) or ``key:=JSON`` (a number, bool or list); a key given twice matches any."""
    filters: dict[str, Any] = {}
    for item in items:
        typed = ":=" in item and item.index(":=") < item.index("=") + 1
        key, _, value = item.partition(":=" if typed else "=")
        if not key or (not typed and "=" not in item):
            raise CLIError(f"--filter: {item!r} is not key=value (or key:=JSON for numbers and booleans)")
        if typed:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise CLIError(f"--filter: {item!r}: the value after := must be JSON ({error.msg})") from error
        values = value if isinstance(value, list) else [value]
        if key in filters:
            previous = filters[key] if isinstance(filters[key], list) else [filters[key]]
            filters[key] = previous + values
        else:
            filters[key] = value
    return filters


def hit_dict(hit) -> dict[str, Any]:
    return {
        "id": str(getattr(hit, "id")),
        "score": float(getattr(hit, "score")),
        "text": getattr(hit, "text", None),
        "metadata": dict(getattr(hit, "metadata", None) or {}),
    }


def print_table(hits: list[dict[str, Any]], out) -> None:
    if not hits:
        print("No results.", file=out)
        return
    width = shutil.get_terminal_size((120, 24)).columns
    id_width = min(max(len(h["id"]) for h in hits), 40)
    indent = 4 + 2 + 7 + 2 + id_width + 2
    text_width = max(width - indent, 30)
    print(f"{'#':>4}  {'score':>7}  {'id':<{id_width}}  text", file=out)
    for rank, hit in enumerate(hits, 1):
        shown_id = hit["id"] if len(hit["id"]) <= id_width else hit["id"][: id_width - 1] + "…"
        text = one_line(hit["text"] or "", text_width)
        print(f"{rank:>4}  {hit['score']:>7.4f}  {shown_id:<{id_width}}  {text}", file=out)
        if hit["metadata"]:
            meta = " ".join(f"{k}={json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}"
                            for k, v in hit["metadata"].items())
            print(" " * indent + one_line(meta, text_width), file=out)


def cmd_search(args) -> int:
    store = parse_store(args.store)
    check_credentials(store)
    filters = parse_filters(args.filter or [])
    if args.top_k < 1:
        raise CLIError(f"--top-k: must be at least 1, got {args.top_k}")
    encoder = load_encoder(args)
    target = open_store(store, encoder, args.collection, args.dimensions, create=False)
    options: dict[str, Any] = {"top_k": args.top_k}
    if filters:
        options["filter"] = filters
    if args.group_by_document:
        options["group_by_document"] = True
    try:
        hits = [hit_dict(h) for h in target.search(args.query, **options)]
    except Exception as error:
        raise store_failure(store, error) from error
    finally:
        _close(target)
    if args.json:
        json.dump(hits, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(hits, sys.stdout)
    return 0


def cmd_convert(args) -> int:
    from jinav3 import Encoder

    destination = Path(args.dst).expanduser()
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise CLIError(f"convert: {args.dst!r} already exists and is not an empty folder; choose a new folder")
    encoder = Encoder.from_pretrained(args.src, device=args.device, dtype=args.dtype)
    destination.parent.mkdir(parents=True, exist_ok=True)
    # write next to the destination, then rename: an interrupted convert leaves no half-written model
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    umask = os.umask(0)
    os.umask(umask)
    try:
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the model folder should not be
        encoder.save_pretrained(staging)
        if destination.exists():
            destination.rmdir()
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"Converted {args.src} ({encoder.checkpoint.layout} layout, {str(encoder.dtype).removeprefix('torch.')}) "
          f"to {args.dst} (transformers-native: base weights + one peft adapter folder per task)")
    return 0


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def cmd_info(args) -> int:
    import platform

    import torch
    from huggingface_hub import constants

    from jinav3 import __version__
    from jinav3.devices import pick_device, pick_dtype

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

    section("data")
    row("data dir", f"{DEFAULT_DATA_DIR}  ({Path(DEFAULT_DATA_DIR).resolve()})")
    row("default store", DEFAULT_STORE)
    row("default collection", DEFAULT_COLLECTION)

    width = max(len(k) for k, v in rows if v) + 2
    for key, value in rows:
        print(f"{key:<{width}}{value}" if value else key)
    return 0


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


# ============================================================================================ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jinav3",
        description="Index and search text with jina-embeddings-v3 vectors in Qdrant, Milvus or Pinecone.",
        epilog=f"Store URIs: {STORE_FORMS}. Model: --model, else ${MODEL_ENV}, else jinaai/jina-embeddings-v3. "
               f"Set {DEBUG_ENV}=1 to see tracebacks.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", metavar="ID|DIR",
                       help=f"hub id or local folder (default: ${MODEL_ENV}, else jinaai/jina-embeddings-v3)")
        p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
        p.add_argument("--dtype", default="auto", help="auto (bfloat16 on CUDA, else float32), float32, bfloat16, float16")

    def store_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", default=DEFAULT_STORE, metavar="URI", help=f"{STORE_FORMS} (default: %(default)s)")
        p.add_argument("--collection", default=DEFAULT_COLLECTION, metavar="NAME",
                       help="collection (Qdrant, Milvus) or namespace (Pinecone) (default: %(default)s)")
        p.add_argument("--dimensions", type=int, metavar="N",
                       help="Matryoshka size 1..1024 (default: all); search with the size you indexed with")

    p = commands.add_parser("index", help="embed a corpus with passage vectors and write it to a store",
                            description="Embed CORPUS (.jsonl, .json, .csv, .parquet, .txt, .md or a folder of them) "
                                        "with retrieval.passage vectors and upsert it. Re-running overwrites, "
                                        "so an interrupted run resumes by running it again.")
    p.add_argument("corpus", metavar="CORPUS")
    store_options(p)
    model_options(p)
    p.add_argument("--late-chunking", action="store_true",
                   help="split each document into chunks embedded in the context of the whole document")
    p.add_argument("--chunker", choices=("sentences", "tokens"), default="sentences",
                   help="how --late-chunking splits documents (default: %(default)s)")
    p.add_argument("--chunk-size", type=int, metavar="N", help="tokens per chunk with --chunker tokens")
    p.add_argument("--id-field", default="id", metavar="NAME", help="field holding the document id (default: %(default)s)")
    p.add_argument("--text-field", default="text", metavar="NAME", help="field holding the text (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive, metavar="N",
                   help="documents embedded per step, written while the next step is embedded (default: the store's, 64)")
    p.add_argument("--strict", action="store_true", help="stop at a row without text instead of skipping it")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_index)

    p = commands.add_parser("search", help="search a store with a query vector",
                            description="Embed QUERY with retrieval.query and print the nearest entries.")
    p.add_argument("query", metavar="QUERY")
    store_options(p)
    model_options(p)
    p.add_argument("--top-k", type=int, default=10, metavar="N", help="how many hits (default: %(default)s)")
    p.add_argument("--filter", action="append", metavar="KEY=VALUE",
                   help="metadata filter, repeatable: key=value (string) or key:=JSON (number, bool, list); "
                        "one key given twice matches either value")
    p.add_argument("--group-by-document", action="store_true", help="one hit per document (late-chunked corpora)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {id, score, text, metadata}")
    p.set_defaults(handler=cmd_search)

    p = commands.add_parser("convert", help="write a checkpoint in the transformers-native layout",
                            description="Load SRC (original jinaai/jina-embeddings-v3 layout, a hub id or folder) and "
                                        "write DST: transformers-native base weights plus one peft adapter per task.")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument("--device", default="cpu", help="where to load it (default: %(default)s)")
    p.add_argument("--dtype", default="float32", help="weights to write: float32, bfloat16, float16 (default: %(default)s)")
    p.set_defaults(handler=cmd_convert)

    p = commands.add_parser("info", help="versions, device, model resolution and data locations")
    model_options(p)
    p.set_defaults(handler=cmd_info)
    return parser


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return number


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (0 on success)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    log = logging.getLogger("jinav3")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("jinav3: %(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    log.addHandler(handler)
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.filterwarnings("ignore", message="Failed to obtain server version")
                warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")
            return args.handler(args)
    except KeyboardInterrupt:
        print("jinav3: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `jinav3 search ... | head`: the reader left, nothing more to say
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a real file (captured in tests)
            pass
        return 141
    except Exception as error:
        if debug:
            raise
        from jinav3.errors import JinaV3Error

        if isinstance(error, (CLIError, JinaV3Error)):
            message = str(error)
        else:
            message = f"{type(error).__name__}: {error} (set {DEBUG_ENV}=1 for the traceback)"
        print(f"jinav3: error: {one_line(message, 2000)}", file=sys.stderr)
        return 1
    finally:
        log.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())

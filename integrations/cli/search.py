"""``jinav3 search QUERY``: embed a query with retrieval.query and print the nearest entries."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import TYPE_CHECKING, Any, TextIO

from jinav3.integrations.stores.hybrid import MODES, RRF_K, check_mode
from jinav3.integrations.stores.uri import open_store, store_failure

from .errors import UsageError, close_quietly, one_line, setting_up
from .options import check_model_options, load_encoder, model_options, positive, server_options, store_of, store_options

if TYPE_CHECKING:
    from jinav3.integrations.stores.records import Hit


def add_search_command(commands: Any) -> None:
    p = commands.add_parser("search", help="search a store with a query vector",
                            description="Embed QUERY with retrieval.query and print the nearest entries.")
    p.add_argument("query", metavar="QUERY")
    store_options(p)
    model_options(p)
    server_options(p)
    p.add_argument("--top-k", type=positive, default=10, metavar="N", help="how many hits (default: %(default)s)")
    p.add_argument("--filter", action="append", metavar="KEY=VALUE",
                   help="metadata filter, repeatable: key=value (string) or key:=JSON (number, bool, list); "
                        "one key given twice matches either value")
    p.add_argument("--group-by-document", action="store_true", help="one hit per document (late-chunked corpora)")
    p.add_argument("--mode", choices=MODES, help="dense, sparse (lexical BM25) or hybrid (both fused by RRF); "
                                                 "default: hybrid on a hybrid collection, else dense")
    p.add_argument("--rrf-k", type=positive, metavar="K",
                   help=f"reciprocal rank fusion's constant for --mode hybrid (default: {RRF_K})")
    p.add_argument("--json", action="store_true", help="print a JSON list of {id, score, text, metadata}")
    p.set_defaults(handler=cmd_search)


def parse_filters(items: list[str]) -> dict[str, Any]:
    """``key=value`` (a string) or ``key:=JSON`` (a number, bool or list); a key given twice matches any."""
    filters: dict[str, Any] = {}
    for item in items:
        typed = ":=" in item and item.index(":=") < item.index("=") + 1
        key, _, value = item.partition(":=" if typed else "=")
        if not key or (not typed and "=" not in item):
            raise UsageError(f"--filter: {item!r} is not key=value (or key:=JSON for numbers and booleans)")
        if typed:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise UsageError(f"--filter: {item!r}: the value after := must be JSON ({error.msg})") from error
        values = value if isinstance(value, list) else [value]
        if key in filters:
            previous = filters[key] if isinstance(filters[key], list) else [filters[key]]
            filters[key] = previous + values
        else:
            filters[key] = value
    return filters


def hit_dict(hit: Hit) -> dict[str, Any]:
    return {
        "id": str(hit.id),
        "score": None if hit.score is None else float(hit.score),
        "text": hit.text,
        "metadata": dict(hit.metadata or {}),
    }


def print_table(hits: list[dict[str, Any]], out: TextIO) -> None:
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


def cmd_search(args: argparse.Namespace) -> int:
    store = store_of(args)
    filters = parse_filters(args.filter or [])
    check_model_options(args)
    with setting_up():
        encoder = load_encoder(args)
        # the collection knows the --dimensions and tasks it was made with: use them unless given
        target = open_store(store, args.collection, encoder, dimensions=args.dimensions, create=False,
                                 adopt_signature=True)
    options: dict[str, Any] = {"top_k": args.top_k}
    if filters:
        options["filter"] = filters
    if args.group_by_document:
        options["group_by_document"] = True
    if args.mode is not None:
        options["mode"] = args.mode
        try:  # --mode sparse on a dense collection: a usage error, before any work
            with setting_up():
                check_mode(args.mode, target.hybrid, store.place(args.collection))
        except UsageError:
            close_quietly(target)
            raise
    if args.rrf_k is not None:
        options["rrf_k"] = args.rrf_k
    try:
        hits = [hit_dict(h) for h in target.search(args.query, **options)]
    except Exception as error:
        raise store_failure(store, error) from error
    finally:
        close_quietly(target)
    if args.json:
        json.dump(hits, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(hits, sys.stdout)
    return 0

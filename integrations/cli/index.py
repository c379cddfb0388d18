"""``jinav3 index CORPUS``: embed a corpus with passage vectors and write it into a store."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jinav3.integrations.stores.limits import RecordLimits
from jinav3.integrations.stores.uri import StoreURI, open_store, store_class, store_failure
from jinav3.secrets import redact

from .errors import CLIError, UsageError, close_quietly, setting_up, warn
from .index_ray import add_ray_arguments, cmd_index_ray  # Ray itself is imported only with --ray
from .options import (
    check_model_options,
    load_encoder,
    model_choice,
    model_options,
    positive,
    server_options,
    store_of,
    store_options,
)
from .progress import IndexProgress, rate


def add_index_command(commands: Any) -> None:
    p = commands.add_parser("index", help="embed a corpus with passage vectors and write it to a store",
                            description="Embed CORPUS (.jsonl, .json, .csv, .parquet, .txt, .md or a folder of them) "
                                        "with retrieval.passage vectors and upsert it. Re-running overwrites, "
                                        "so an interrupted run resumes by running it again.")
    p.add_argument("corpus", metavar="CORPUS")
    store_options(p)
    model_options(p)
    server_options(p)
    p.add_argument("--late-chunking", action="store_true",
                   help="split each document into chunks embedded in the context of the whole document")
    p.add_argument("--hybrid", action="store_true",
                   help="a new collection also holds lexical (BM25) vectors from the model's tokenizer, for "
                        "jinav3 search --mode sparse/hybrid (Qdrant, Milvus Lite, Milvus 2.5+); an existing collection "
                        "keeps its kind")
    p.add_argument("--chunker", choices=("sentences", "tokens"), default="sentences",
                   help="how --late-chunking splits documents (default: %(default)s)")
    p.add_argument("--chunk-size", type=positive, metavar="N", help="tokens per chunk with --chunker tokens")
    p.add_argument("--id-field", default="id", metavar="NAME",
                   help="field holding the document id (default: %(default)s)")
    p.add_argument("--text-field", default="text", metavar="NAME", help="field holding the text (default: %(default)s)")
    p.add_argument("--batch-size", type=positive, metavar="N",
                   help="documents embedded per step, written while the next step is embedded "
                        "(default: the store's, 64)")
    p.add_argument("--reembed", action="store_true",
                   help="embed and write every document again, also those stored unchanged since they were written "
                        "(by default they are skipped: each point records what it was made from); after --ray "
                        "every document is embedded anyway")
    p.add_argument("--strict", action="store_true",
                   help="stop at a bad row (no text, a repeated id, NaN) instead of skipping it")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_ray_arguments(p)
    p.set_defaults(handler=cmd_index)


def limits_of(store: StoreURI) -> RecordLimits:
    """The store's limits on rows, checked while the corpus is read (its client is imported now)."""
    with setting_up():
        return store_class(store, with_encoder=False).record_limits()


def cmd_index(args: argparse.Namespace) -> int:
    from jinav3.integrations.corpus import read_located

    if getattr(args, "ray", False):  # jinav3 index ... --ray: Ray Data workers (cli/index_ray.py)
        return cmd_index_ray(args)
    store = store_of(args)
    if args.chunk_size is not None and (args.chunker != "tokens" or not args.late_chunking):
        raise UsageError("--chunk-size: only applies with --late-chunking --chunker tokens")
    if args.chunker == "tokens" and args.late_chunking and args.chunk_size is None:
        raise UsageError("--chunker tokens: give --chunk-size N (tokens per chunk)")
    check_model_options(args)
    # Every row is checked (the store's limits included) before the store is opened: a bad row is skipped by
    # file:line, and with --strict nothing is created at all.
    located = read_located(args.corpus, id_field=args.id_field, text_field=args.text_field, strict=args.strict,
                           rules=limits_of(store), late_chunking=args.late_chunking, warn=warn)
    records = [record for _, record in located]
    if not records:
        raise CLIError(f"corpus: {args.corpus!r} holds no document with text in field {args.text_field!r}")
    if not args.quiet and sys.stderr.isatty():  # loading the real model takes a while: say what is going on
        source = f"connecting to {redact(args.server)}" if args.server else f"loading {model_choice(args.model)[0]}"
        print(f"jinav3: {len(records)} documents read; {source} ...", file=sys.stderr)
    with setting_up():
        encoder = load_encoder(args)
        progress = IndexProgress(encoder, len(records), args.quiet)
        target = open_store(store, args.collection, progress, dimensions=args.dimensions,
                                 hybrid=True if args.hybrid else None)

    options: dict[str, Any] = {}
    if args.late_chunking:
        options.update(late_chunking=True, chunker=args.chunker)
        if args.chunk_size is not None:
            options["chunk_size"] = args.chunk_size
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    try:
        target.add(records, skip_unchanged=not args.reembed, **options)
        unchanged = target.unchanged_in_last_add
        progress.bar.update(unchanged)
        seconds = progress.close()
        try:
            total = target.count()
        except Exception:  # the summary must not fail the run
            total = None
        advice = target.size_advice(total) if total is not None else None
    except KeyboardInterrupt:
        progress.close()
        print(f"jinav3: interrupted after embedding {progress.documents} of {len(records)} documents; run the same "
              "command again to resume (what was written is overwritten, not duplicated)", file=sys.stderr)
        return 130
    except Exception as error:
        progress.close()
        raise store_failure(store, error) from error
    finally:
        close_quietly(target)
    truncation = progress.truncation_warning(located)
    if truncation:
        print(f"jinav3: warning: {truncation}", file=sys.stderr)
    if advice:
        print(f"jinav3: note: {advice}", file=sys.stderr)
    held = f"; it now holds {total} entries" if total is not None else ""
    kept = f"{unchanged} stored unchanged already, not embedded again; " if unchanged else ""
    rates = f" ({rate(progress.documents, seconds)} documents/s, {rate(progress.tokens, seconds)} tokens/s)" \
        if progress.documents else ""  # nothing embedded: no rate to speak of
    print(f"Indexed {progress.documents + unchanged} documents ({kept}{progress.chunks} chunks, {progress.tokens:,} "
          f"tokens embedded) in {seconds:.1f} s{rates} into {store.place(args.collection)}{held}",
          flush=True)  # said before the process exits
    return 0

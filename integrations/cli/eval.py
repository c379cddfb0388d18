"""``jinav3 eval BEIR_FOLDER``: retrieval quality per search mode and Matryoshka size (integrations/evaluation.py).

    jinav3 eval scifact/ --modes dense,sparse,hybrid --dimensions 256,1024 --json scifact.json

The corpus is indexed into ``--store`` (default: a temporary Qdrant local folder, removed afterwards), one
collection per size (``<collection>_<size>``, hybrid when a lexical mode is asked for), then every judged
query is searched in each mode; a table and optionally a JSON file give nDCG@10, R@100 and MRR@10.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from jinav3.errors import CorpusError
from jinav3.integrations.stores.hybrid import MODES
from jinav3.integrations.stores.uri import open_store, store_failure

from .errors import CLIError, UsageError, setting_up
from .options import check_model_options, load_encoder, model_options, server_options, store_of


def add_eval_command(commands: Any) -> None:
    p = commands.add_parser("eval", help="nDCG@10, recall@100 and MRR@10 on a BEIR-format folder",
                            description="Index BEIR_FOLDER's corpus.jsonl and search its judged queries "
                                        "(queries.jsonl, qrels/SPLIT.tsv) in each mode and Matryoshka size.")
    p.add_argument("folder", metavar="BEIR_FOLDER")
    p.add_argument("--modes", default=",".join(MODES), metavar="LIST",
                   help=f"comma-separated search modes, of {', '.join(MODES)} (default: %(default)s)")
    p.add_argument("--dimensions", default=None, metavar="LIST",
                   help="comma-separated Matryoshka sizes, e.g. 256,1024 (default: the model's full size)")
    p.add_argument("--split", default="test", help="the qrels file to score, qrels/SPLIT.tsv (default: %(default)s)")
    p.add_argument("--store", default=None, metavar="URI",
                   help="where to index (default: a temporary Qdrant local folder, removed afterwards)")
    p.add_argument("--collection", default="eval", metavar="NAME",
                   help="collection name prefix: one collection per size, NAME_SIZE (default: %(default)s)")
    p.add_argument("--api-key-env", metavar="NAME", help="environment variable holding the store's API key")
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    model_options(p)
    server_options(p)
    p.set_defaults(handler=cmd_eval)


def _sizes(value: str | None) -> list[int | None]:
    if value is None:
        return [None]
    sizes = []
    for item in value.split(","):
        if not item.strip().isdigit() or int(item) < 1:
            raise UsageError(f"--dimensions: must be comma-separated positive integers, got {value!r}")
        sizes.append(int(item))
    return list(dict.fromkeys(sizes))


def cmd_eval(args: argparse.Namespace) -> int:
    from jinav3.integrations.evaluation import check_modes, evaluate, read_beir, table

    with setting_up():  # --modes names its values before any work
        modes = check_modes([m.strip() for m in args.modes.split(",") if m.strip()])
    sizes = _sizes(args.dimensions)
    try:
        data = read_beir(args.folder, args.split)
    except CorpusError as error:
        raise CLIError(str(error)) from error
    temporary = None if args.store else tempfile.mkdtemp(prefix="jinav3-eval-")
    args.store = args.store or f"qdrant:{temporary}"
    store = store_of(args)
    check_model_options(args)
    try:
        with setting_up():
            encoder = load_encoder(args)

        def open_size(size: int | None) -> Any:
            name = f"{args.collection}_{size or encoder.output_size(None)}"
            with setting_up():
                return open_store(store, name, encoder, dimensions=size,
                                       hybrid=True if set(modes) - {"dense"} else None)
        try:
            results = evaluate(data, open_size, modes, sizes, show_progress=not args.quiet)
        except UsageError:
            raise
        except Exception as error:
            raise store_failure(store, error) from error
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    print(f"{Path(args.folder).name}: {len(data.corpus):,} documents, {len(data.queries):,} judged queries "
          f"({args.split})")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"folder": str(args.folder), "split": args.split, "results": results},
                                              indent=2))
    sys.stdout.flush()
    return 0

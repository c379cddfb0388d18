"""``jinav3 convert SRC DST``: write a checkpoint in the transformers-native layout."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import CLIError
from .options import check_model_options


def add_convert_command(commands: Any) -> None:
    p = commands.add_parser("convert", help="write a checkpoint in the transformers-native layout",
                            description="Load SRC (original jinaai/jina-embeddings-v3 layout, a hub id or folder) and "
                                        "write DST: transformers-native base weights plus one peft adapter per task.")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument("--device", default="cpu", help="where to load it (default: %(default)s)")
    p.add_argument("--dtype", default="float32",
                   help="weights to write: float32, bfloat16, float16 (default: %(default)s)")
    p.set_defaults(handler=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from jinav3 import Encoder

    destination = Path(args.dst).expanduser()
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise CLIError(f"convert: {args.dst!r} already exists and is not an empty folder; choose a new folder")
    check_model_options(args)
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

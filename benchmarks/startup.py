"""Start-up cost: what importing the library and running the command line take before any work.

    python -m benchmarks.startup [--model tests/golden/tiny-v3] [--rounds 3] [--json out.json]

Prints, each the best of ``--rounds`` fresh interpreters:
  * ``import jinav3.encoder`` (cumulative import time, from ``python -X importtime``), and its largest
    third-party parts (torch, transformers, peft);
  * the wall time of ``jinav3 --help``;
  * the wall time of ``jinav3 search "q"`` on the tiny model against an embedded Qdrant collection filled
    beforehand (``jinav3 index examples/data/passages.jsonl``; the index is not timed).
Goals (issue 24, a quiet machine): ``--help`` under 1 s, ``search`` on the tiny model under 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PASSAGES = REPO / "examples" / "data" / "passages.jsonl"
TINY = REPO / "tests" / "golden" / "tiny-v3"
WATCHED = ("torch", "transformers", "peft", "httpx", "qdrant_client", "pymilvus", "pinecone", "ray", "fastapi")


def import_times(module: str) -> dict[str, float]:
    """Seconds each of ``module`` and the WATCHED packages took to import (cumulative, as ``-X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                          text=True, check=True)
    times: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)$", line)
        if match and match[3] in (module, *WATCHED):
            times[match[3]] = max(times.get(match[3], 0.0), int(match[1]) / 1e6)
    return times


def wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def jinav3() -> list[str]:
    """The entry point as installed next to this interpreter (what a user types), else through Python."""
    script = Path(sys.executable).with_name("jinav3")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from jinav3.integrations.cli import main; "
                                                                         "raise SystemExit(main())"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(TINY))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    report: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    runs = [import_times("jinav3.encoder") for _ in range(args.rounds)]
    report["import jinav3.encoder"] = {name: min(r.get(name, 0.0) for r in runs) for name in runs[0]}
    report["jinav3 --help"] = min(wall(jinav3() + ["--help"], env) for _ in range(args.rounds))
    with tempfile.TemporaryDirectory(prefix="jinav3-startup-") as work:
        store = f"qdrant:{work}/store"
        subprocess.run(jinav3() + ["index", str(PASSAGES), "--model", args.model, "--store", store], check=True,
                       capture_output=True, env=env)
        search = jinav3() + ["search", "q", "--model", args.model, "--store", store]
        report["jinav3 search"] = min(wall(search, env) for _ in range(args.rounds))
    print(f"import jinav3.encoder: {report['import jinav3.encoder'].get('jinav3.encoder', 0):.2f} s  ("
          + ", ".join(f"{k} {v:.2f} s" for k, v in report["import jinav3.encoder"].items() if k != "jinav3.encoder")
          + ")")
    print(f"jinav3 --help:         {report['jinav3 --help']:.2f} s   (goal < 1 s)")
    print(f"jinav3 search (tiny):  {report['jinav3 search']:.2f} s   (goal < 5 s; best of {args.rounds})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()

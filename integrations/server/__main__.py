"""``python -m jinav3.integrations.server [flags]``: the same as ``jinav3 serve [flags]``."""

from __future__ import annotations

import argparse
import sys

from jinav3.integrations.cli.errors import CLIError, exit_status  # an entry point, like jinav3 itself
from jinav3.integrations.cli.serve import add_serve_arguments, cmd_serve


def main(argv: list[str] | None = None) -> int:
    from jinav3.errors import JinaV3Error

    parser = argparse.ArgumentParser(prog="python -m jinav3.integrations.server",
                                     description="Serve jina-embeddings-v3 embeddings over HTTP (see jinav3 serve).")
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_serve(args)
    except (CLIError, JinaV3Error) as error:
        print(f"jinav3: error: {error}", file=sys.stderr)
        return exit_status(error)


if __name__ == "__main__":
    sys.exit(main())

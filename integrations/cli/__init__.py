"""The ``jinav3`` command line (the ``jinav3`` entry point is :func:`main`); see ``cli/main.py``."""

from .errors import CLIError, UsageError, exit_status
from .main import build_parser, main

__all__ = ["main", "build_parser", "CLIError", "UsageError", "exit_status"]

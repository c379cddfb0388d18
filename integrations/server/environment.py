"""Every ``jinav3 serve`` flag from the environment, as text-embeddings-inference reads its settings: a flag
``--max-batch-tokens`` also reads ``JINAV3_MAX_BATCH_TOKENS`` (a flag given on the command line wins), and
``--help`` names the variable. A value from the environment is checked like the flag's own, and an error
names the variable. Importable without the server extra (the command line builds the parser everywhere);
nothing here raises while the parser is built, so a bad variable only stops ``jinav3 serve`` itself.

text-embeddings-inference's own variables are read too, after ours, for the settings both servers have
(:data:`TEI_VARIABLES`: ``MODEL_ID``, ``PORT``, ``MAX_BATCH_TOKENS``, ...), so a TEI manifest that configures the
server through its environment moves over by changing the image. Not ``HOSTNAME``: every shell and container
sets it to the machine's own name, which is not an address to bind; give ``--host`` or ``JINAV3_HOST``.
Not ``API_KEY``: a key found by accident would lock clients out; name the variable with
``--api-key-env API_KEY``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from typing import Any

PREFIX = "JINAV3_"
TEI_VARIABLES = {"--model-id": "MODEL_ID", "--port": "PORT", "--dtype": "DTYPE", "--payload-limit": "PAYLOAD_LIMIT",
                 "--max-batch-tokens": "MAX_BATCH_TOKENS", "--max-client-batch-size": "MAX_CLIENT_BATCH_SIZE",
                 "--max-concurrent-requests": "MAX_CONCURRENT_REQUESTS"}
"""text-embeddings-inference's variable for each flag it shares with ``jinav3 serve`` (its ``env`` names)."""
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class EnvValue(str):
    """A default read from ``variable``; argparse converts it with the flag's type when the flag is not given."""

    variable: str

    def __new__(cls, value: str, variable: str) -> "EnvValue":
        self = super().__new__(cls, value)
        self.variable = variable
        return self


class NotASwitch(EnvValue):
    """A switch's variable holding neither true nor false: refused by ``check`` when ``jinav3 serve`` runs."""


class ReplaceDefault(argparse._AppendAction):
    """``append``, except that the first value given on the command line replaces the default (a list from the
    environment) instead of adding to it: the command line wins, as for every other flag."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        if getattr(namespace, self.dest, None) is self.default:
            setattr(namespace, self.dest, [])
        super().__call__(parser, namespace, values, option_string)


def variable_of(action: argparse.Action) -> str:
    """``--max-batch-tokens`` -> ``JINAV3_MAX_BATCH_TOKENS`` (the flag's first, canonical spelling)."""
    return PREFIX + action.option_strings[0].lstrip("-").upper().replace("-", "_")


def variables_of(action: argparse.Action) -> list[str]:
    """The variables a flag reads, first found wins: ``JINAV3_<FLAG>``, then TEI's own name when it has one."""
    tei = [TEI_VARIABLES[flag] for flag in action.option_strings if flag in TEI_VARIABLES]
    return [variable_of(action), *tei]


def read_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    """Give each flag of ``parser`` its ``JINAV3_<FLAG>`` variable (and TEI's, for the flags TEI has): named in
    --help, and the value of the first one set as the default."""
    environ = os.environ if environ is None else environ
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        variables = variables_of(action)
        action.help = f"{action.help or ''} [env: {', then '.join(variables)}]".strip()
        variable = next((v for v in variables if (environ.get(v) or "").strip()), None)
        if variable is None:
            continue
        raw = environ[variable]
        if action.nargs == 0:  # a switch: true/false, 1/0, yes/no, on/off; anything else is refused in check()
            word = raw.strip().lower()
            action.default = True if word in _TRUE else False if word in _FALSE else NotASwitch(raw, variable)
        elif isinstance(action, argparse._AppendAction):  # repeatable: a comma-separated list
            action.default = [part.strip() for part in raw.split(",") if part.strip()]
        else:
            action.default = EnvValue(raw.strip(), variable)
            action.type = _checked(action, variable)


def _checked(action: argparse.Action, variable: str) -> Callable[[str], Any]:
    """The flag's type, and its choices for a value from the environment (argparse checks a default's type, not its
    choices), with errors that name the variable."""
    typed = callable(action.type)
    convert: Callable[[str], Any] = action.type if callable(action.type) else str

    def parse(value: str) -> Any:
        if not isinstance(value, EnvValue):
            return convert(value)
        try:  # a string setting stays an EnvValue, so read_api_key can tell where it came from
            result = convert(str(value)) if typed else value
        except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
            raise argparse.ArgumentTypeError(f"${variable}: {error}") from None
        if action.choices is not None and result not in action.choices:
            allowed = ", ".join(str(c) for c in action.choices)
            raise argparse.ArgumentTypeError(f"${variable}: {str(value)!r} is not one of {allowed}")
        return result

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names the type in its own messages
    return parse


def check(args: argparse.Namespace) -> list[str]:
    """Problems left in parsed ``args``: switches whose variable was neither true nor false."""
    return [f"${value.variable}: {str(value)!r} is not true or false (1/0, true/false, yes/no, on/off)"
            for value in vars(args).values() if isinstance(value, NotASwitch)]


def from_environment(value: Any) -> str | None:
    """The variable a setting came from, or None if it was given on the command line (or is a default)."""
    return value.variable if isinstance(value, EnvValue) else None

"""The ``dimattn`` command line: a thin layer over the Python API.

Each subcommand is a pair of functions here: ``_add_<name>(subparsers)`` declares its options and
``_run_<name>(args)`` calls the API. Bad input raises :class:`DimattnError`; ``main`` prints it on one
line and exits 2, with no traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from dimattn.errors import DimattnError


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 (argparse prints the whole usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


# --------------------------------------------------------------------------- train
def _add_train(sub: argparse._SubParsersAction) -> None:
    from dimattn.train import add_train_arguments

    p = sub.add_parser("train", help="train one agent on one Atari game", description=(
        "Train one agent on one Atari game with the study's PPO protocol (SPEC §4). Accepts the "
        "published RL Zoo command line verbatim."))
    add_train_arguments(p)


def _run_train(args: argparse.Namespace) -> int:
    from dimattn.train import train_from_args

    train_from_args(args)
    return 0


# Subcommands in the order `dimattn --help` lists them.
COMMANDS: list[tuple[str, Callable, Callable]] = [
    ("train", _add_train, _run_train),
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dimattn", description=(
        "Self-attention over dimensions of a CNN feature map in visual deep RL: train agents, run "
        "studies, analyse results and look inside trained agents."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for _, add, _ in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = {name: run for name, _, run in COMMANDS}[args.command]
    try:
        return int(run(args) or 0)
    except DimattnError as exc:
        print(f"dimattn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dimattn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

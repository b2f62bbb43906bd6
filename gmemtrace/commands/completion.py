"""`gmemtrace completion SHELL`: a completion script, generated from the parsers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from gmemtrace.errors import EXIT_OK


class Completion:
    name = "completion"
    help = "print a shell completion script"
    description = (
        "Print a completion script for SHELL, e.g. "
        "gmemtrace completion bash > /etc/bash_completion.d/gmemtrace"
    )

    def __init__(self, whole_parser: Callable[[], argparse.ArgumentParser]) -> None:
        """`whole_parser()`: every command's options and the live view's (cli.py's)."""
        self.whole_parser = whole_parser

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("shell", choices=("bash", "zsh", "tcsh"), metavar="SHELL")

    def run(self, args: argparse.Namespace) -> int:
        import shtab  # generates the script from the parsers, so it never falls behind them

        parser = self.whole_parser()
        for action in _walk_actions(parser):
            if action.type is Path:
                action.complete = shtab.FILE  # type: ignore[attr-defined]
        print(shtab.complete(parser, shell=args.shell), end="")
        return EXIT_OK


def _walk_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    found = []
    for action in parser._actions:
        found.append(action)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_walk_actions(sub))
    return found

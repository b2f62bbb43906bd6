"""The commands: each a small object that declares its options and runs, as memray's
commands/ are. cli.py lists them, builds the parser from them and dispatches; a command's
output is one Report rendered in the format asked for (sinks/render.py).

The live view (`gmemtrace [OPTIONS] [-- CMD]`, no command name) is commands/live.py.
"""

from __future__ import annotations

import argparse
from typing import Protocol


class Command(Protocol):
    """One `gmemtrace NAME` command."""

    name: str
    help: str  # one line, in `gmemtrace --help`'s list
    description: str  # `gmemtrace NAME --help` ("" : the help line)

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        """Declare the command's options."""

    def run(self, args: argparse.Namespace) -> int:
        """Do it; the exit status."""

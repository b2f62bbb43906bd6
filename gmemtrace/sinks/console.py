"""The rich console gmemtrace prints to: the terminal's size, or wide enough for logs."""

from __future__ import annotations

import os
import sys

from rich.console import Console


def make_console() -> Console:
    # Not a terminal: wide enough that tables stay tables in logs and CI.
    if sys.stdout.isatty():
        return Console()
    return Console(width=int(os.environ.get("COLUMNS", 140)))

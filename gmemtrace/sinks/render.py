"""What a command prints, in the format asked for: one value, one render().

`record`, `report`, `probes`, `workload` and `doctor` build a Report (their data, and how
it reads as a table, and as CSV where it is rows) and render it; none of them chooses
between json, table and csv by hand.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import RenderableType

from gmemtrace.errors import UsageError


class Format(enum.StrEnum):
    TABLE = "table"  # rich, for people
    JSON = "json"  # the data, for scripts (the README's contracts)
    CSV = "csv"  # one row per guest_memfd, for spreadsheets


@dataclass(frozen=True)
class Report:
    """A command's output: `data` (what JSON prints), `table()` (what people read) and,
    for row data, `csv()`."""

    data: Any
    table: Callable[[], RenderableType]
    csv: Callable[[], str] | None = None

    def render(self, fmt: Format, out: TextIO | None = None) -> None:
        out = out or sys.stdout
        if fmt is Format.JSON:
            print(json.dumps(self.data, indent=2), file=out)
        elif fmt is Format.CSV:
            if self.csv is None:
                raise UsageError("this output has no CSV form; use --format table or json")
            out.write(self.csv())
        else:
            from gmemtrace.sinks.console import make_console

            make_console().print(self.table())

"""`gmemtrace report FILE`: a trace file summarised."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gmemtrace.errors import EXIT_OK
from gmemtrace.sinks.render import Format, Report


def trace_report(data: dict[str, object]) -> Report:
    """A trace's report (gmemtrace/report.py), as `report` and `record` print it."""
    from gmemtrace.sinks.report_table import to_csv, to_table

    return Report(data, lambda: to_table(data), lambda: to_csv(data))


class ReportCommand:
    name = "report"
    help = "summarise a trace file"
    description = ""

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("trace", type=Path, metavar="FILE")
        parser.add_argument("--format", type=Format, choices=list(Format), default=Format.TABLE)

    def run(self, args: argparse.Namespace) -> int:
        from gmemtrace.report import report_file

        data = report_file(args.trace)
        trace_report(data).render(args.format)
        if not data["trace"]["complete"]:
            print(f"gmemtrace: warning: {args.trace}: {data['trace']['problem']}", file=sys.stderr)
        return EXIT_OK

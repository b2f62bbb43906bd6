"""`gmemtrace explain FILE`: why each fault of a trace was refused (gmemtrace/model/explain.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gmemtrace.commands.options import positive_int
from gmemtrace.errors import EXIT_OK, UsageError
from gmemtrace.sinks.render import Format, Report


class ExplainCommand:
    name = "explain"
    help = "why each refused fault and memory fault exit of a trace happened"
    description = (
        "For every refused host fault, fault past the end of a guest_memfd and memory fault "
        "exit in a trace: the page and its state then, what put it there (its creation, or "
        "the conversion: who, through which interface, which range, the result and latency), "
        "who faulted, and for an exit the conversion that answered it and how long the vCPU "
        "waited."
    )

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("trace", type=Path, metavar="FILE")
        parser.add_argument(
            "--format", type=Format, choices=[Format.TABLE, Format.JSON], default=Format.TABLE,
            help="table (text, for people; the default) or json",
        )  # fmt: skip
        parser.add_argument("--fault", type=positive_int, metavar="N", help="only the N-th one")
        parser.add_argument("--pid", type=positive_int, action="append", help="only this process's")

    def run(self, args: argparse.Namespace) -> int:
        from gmemtrace.model.explain import explain
        from gmemtrace.report import model_of
        from gmemtrace.sinks.explain_text import to_text
        from gmemtrace.tracefile import read_trace_file

        data = read_trace_file(args.trace)
        items = explain(model_of(data), data.header.start_ns)
        if args.pid:
            items = [i for i in items if i["who"]["pid"] in args.pid]
        if args.fault is not None:
            items = [i for i in items if i["n"] == args.fault]
            if not items:
                raise UsageError(f"{args.trace}: no refused fault or exit number {args.fault}")
        Report(items, lambda: to_text(items)).render(args.format)
        if not data.complete:
            print(f"gmemtrace: warning: {args.trace}: {data.problem}", file=sys.stderr)
        return EXIT_OK

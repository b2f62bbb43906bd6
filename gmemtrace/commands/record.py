"""`gmemtrace record -o FILE [--pid PID]... [-- CMD]`: a capture written to a trace file, its
report printed at the end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gmemtrace.commands.options import add_command, add_targets, add_tier, targets
from gmemtrace.errors import EXIT_OK
from gmemtrace.sinks.render import Format


class Record:
    name = "record"
    help = "record guest_memfd events to a trace file"
    description = (
        "Record guest_memfd events. With -- CMD, CMD starts under trace and the recording "
        "stops when it exits; without --pid or CMD, every process is traced."
    )

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        add_targets(parser)
        parser.add_argument("-o", "--output", type=Path, required=True, help="the trace file")
        add_tier(parser)
        parser.add_argument(
            "--json", action="store_true", help="print the report as JSON at the end"
        )
        add_command(parser, "a command to start under trace")

    def run(self, args: argparse.Namespace) -> int:
        """Record until the command ends (or the pids, the duration, a signal); the exit
        status is the command's when it ended by itself."""
        from gmemtrace.capture import PUMP_S, Capture, StopRule
        from gmemtrace.commands.report import trace_report
        from gmemtrace.report import build_report

        output: Path = args.output
        capture = Capture(
            targets(args),
            output=output,
            tier=args.tier,
            stop=StopRule(args.duration),
            ready="Recording",
            into=output,
        )
        with capture:
            capture.run(PUMP_S["record"])
        collector, header = capture.collector, capture.header
        data = build_report(collector.model, header.kernel, header.probes, header.start_ns)
        trace_report(data).render(Format.JSON if args.json else Format.TABLE)
        if note := capture.ended_note():
            print(note, file=sys.stderr)
        if collector.write_error is not None:
            raise collector.write_error
        print(f"gmemtrace: {collector.events_seen} events recorded to {output}", file=sys.stderr)
        status = capture.command_status()
        return EXIT_OK if status is None else status

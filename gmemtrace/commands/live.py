"""The live view: `gmemtrace [--pid PID]... [--comm NAME] [-- CMD]`.

It enters a capture (gmemtrace/capture.py) and runs the view loop over it: the probes
drained every PUMP_S["view"] into the model, one frame (model/frame.py) made per redraw
at a steady rate, rates sampled every interval; the app (sinks/app.py) draws the frames,
or, headless, one plain table or JSON object per interval is written. Whatever ends it
(the capture's stop rule), the probes are detached and a summary is printed. The demo's
replay of a recorded trace runs the same loop over a replaying capture.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gmemtrace.capture import Capture, StopRule, Targets
from gmemtrace.commands.options import add_command, add_targets, positive_float, targets
from gmemtrace.errors import EXIT_OK
from gmemtrace.events import Counter
from gmemtrace.model.frame import SORTS, Mode
from gmemtrace.sinks.console import make_console
from gmemtrace.sinks.summary import summary
from gmemtrace.tracefile import TraceData
from gmemtrace.view import view_of


class Live:
    """The command with no name: `gmemtrace [OPTIONS] [-- CMD]`."""

    name = ""
    help = "the live view (no command name)"
    description = (
        "Live view of guest_memfd memory: shareability maps, fault rates, conversions. "
        "Subcommands: record, report, probes, doctor, workload, demo, exporter, completion "
        "(gmemtrace COMMAND --help)."
    )

    def prepare_parser(self, parser: argparse.ArgumentParser, with_command: bool = True) -> None:
        add_targets(parser, comm=True)
        parser.add_argument(
            "-i",
            "--interval",
            type=positive_float,
            default=1.0,
            metavar="SECONDS",
            help="rate interval (default 1)",
        )
        parser.add_argument("-o", "--output", type=Path, help="also record to this trace file")
        parser.add_argument(
            "--sort",
            choices=sorted(c.short for c in SORTS),
            default=Counter.HOST_FAULTS.short,
            help="order inodes and threads by this rate (default host)",
        )
        output = parser.add_mutually_exclusive_group()
        output.add_argument(
            "--no-live",
            action="store_true",
            help="a plain table per interval (the default when not on a terminal)",
        )
        output.add_argument("--json", action="store_true", help="one JSON object per interval")
        if with_command:
            add_command(parser, "a command to start under the view; the view ends with it")

    def run(self, args: argparse.Namespace) -> int:
        terminal = is_terminal() and not args.no_live
        options = Options(
            targets(args),
            interval_s=args.interval,
            duration_s=args.duration,
            output=args.output,
            sort=Counter.by_short(args.sort),
            mode=Mode.JSON if args.json else Mode.LIVE if terminal else Mode.PLAIN,
        )
        return show(options)


@dataclass
class Options:
    targets: Targets = field(default_factory=Targets)
    interval_s: float = 1.0
    duration_s: float | None = None
    output: Path | None = None
    sort: Counter = Counter.HOST_FAULTS
    mode: Mode = Mode.LIVE
    truth: Path | None = None  # the demo's ground truth, checked against the summary


def show(options: Options, replay: TraceData | None = None, note: str = "") -> int:
    """`gmemtrace` with no subcommand: attach, show, summarise. `replay`: show this recorded
    trace at its own pace instead (the demo where tracing cannot run), with `note`."""
    headless = options.mode is not Mode.LIVE
    capture = Capture(
        options.targets,
        output=options.output,
        # Counted in the kernel, unless the view also records every event (-o).
        stream_hot=options.output is not None,
        capture_output=not headless,
        stop=StopRule(options.duration_s),
        # Also before the app takes the screen: scripts (and make bench) wait for it.
        ready=None if replay else "Tracing",
        replay=replay,
    )
    console = make_console()
    with capture:
        view = view_of(capture, options.mode, options.interval_s, options.sort, console, note)
        view.run()
    child = capture.child
    if child is not None and child.output is not None:
        sys.stdout.buffer.write(child.read_output())
    if options.mode is not Mode.JSON:
        summary(console, capture.collector, view.info, capture.header.start_ns, options.truth)
    if note := capture.ended_note():
        print(note, file=sys.stderr)
    if capture.collector.write_error is not None:
        raise capture.collector.write_error  # the view went on; the recording did not
    status = capture.command_status()
    return EXIT_OK if status is None else status


def is_terminal() -> bool:
    """Whether the app can take the screen: Textual draws through stderr, so both stdout
    and stderr must be the terminal (`2>file` gets the plain tables instead)."""
    return sys.stdout.isatty() and sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"

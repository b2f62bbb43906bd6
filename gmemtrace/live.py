"""The live view: `gmemtrace [--pid PID]... [--comm NAME] [-- CMD]`.

It drives a capture (gmemtrace/capture.py) under the view loop (sinks/view.py):
the probes drained every 50 ms into the model, the dashboard redrawn at a steady
rate, rates sampled every interval; headless, one plain table or JSON object per
interval. Whatever ends it (duration, the command or the targets exiting, a
signal), the probes are detached and a summary is printed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from gmemtrace.errors import EXIT_OK
from gmemtrace.sinks.console import make_console
from gmemtrace.sinks.dashboard import ViewInfo
from gmemtrace.sinks.summary import summary
from gmemtrace.sinks.view import LiveView

if TYPE_CHECKING:
    from gmemtrace.capture import Capture


@dataclass
class Options:
    pids: list[int] = field(default_factory=list)
    comm: str | None = None
    command: list[str] = field(default_factory=list)
    interval_s: float = 1.0
    duration_s: float | None = None
    output: Path | None = None
    sort: str = "host"
    mode: str = "live"  # live | plain | json
    truth: Path | None = None  # the demo's ground truth, checked against the summary


def run(options: Options) -> int:
    """`gmemtrace` with no subcommand: attach, show, summarise."""
    from gmemtrace.capture import Capture

    headless = options.mode != "live"
    capture = Capture(
        options.pids,
        options.comm,
        options.command,
        options.output,
        # Runs coalesced in the kernel, unless the view also records every event (-o).
        stream_hot=options.output is not None,
        capture_output=not headless,
        duration_s=options.duration_s,
    )
    child = capture.child
    console = make_console()
    header = capture.header
    view = view_of(capture, options, console)
    info = view.info
    clean = False
    try:
        # Also before the app takes the screen: scripts (and make bench) wait for it.
        print(capture.ready_note("Tracing"), file=sys.stderr, flush=True)
        capture.start()
        view.run()
        clean = True
    finally:
        capture.finish(clean)
    if child is not None and child.output is not None:
        sys.stdout.buffer.write(child.read_output())
    if options.mode != "json":
        summary(console, capture.collector, info, header.start_ns, options.truth)
    if note := capture.ended_note():
        print(note, file=sys.stderr)
    if capture.collector.write_error is not None:
        raise capture.collector.write_error  # the view went on; the recording did not
    status = capture.command_status()
    return EXIT_OK if status is None else status


def view_of(capture: Capture, options: Options, console: Console | None = None) -> LiveView:
    """The view of a capture, as `gmemtrace` shows it (make screenshot and the tests build
    the app from it too: LiveView.make_app())."""
    child = capture.child
    described = describe_targets(options, child.pid if child else None)
    header = capture.header
    info = ViewInfo(
        header.kernel, header.probes, described, 0.0, 0, options.sort, waiting_for=described
    )
    return LiveView(
        capture.collector,
        options.mode,
        options.interval_s,
        info,
        console or make_console(),
        capture.should_stop,
        command_output=child.read_output if child else lambda: b"",
        on_tick=capture.follow_comm,
    )


def describe_targets(options: Options, child: int | None) -> str:
    parts = []
    if child is not None:
        parts.append(f"{' '.join(options.command)[:40]} (pid {child})")
    parts += [f"pid {p}" for p in options.pids]
    if options.comm:
        parts.append(f"comm {options.comm}")
    return ", ".join(parts) or "every process"


def is_terminal() -> bool:
    """Whether the app can take the screen: Textual draws through stderr, so both stdout
    and stderr must be the terminal (`2>file` gets the plain tables instead)."""
    return sys.stdout.isatty() and sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"

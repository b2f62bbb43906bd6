"""`gmemtrace record`: a capture written to a trace file, its report printed at the end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gmemtrace.capture import Capture
from gmemtrace.errors import EXIT_OK
from gmemtrace.report import build_report
from gmemtrace.sinks.console import make_console
from gmemtrace.sinks.report_table import to_table


def record(
    output: Path,
    pids: list[int],
    command: list[str],
    tier: str | None = None,
    duration_s: float | None = None,
    as_json: bool = False,
) -> int:
    """Record until the command ends (or the pids, the duration, a signal); the exit status
    is the command's when it ended by itself."""
    capture = Capture(pids, command=command, output=output, tier=tier, duration_s=duration_s)
    clean = False
    try:
        print(capture.ready_note("Recording", output), file=sys.stderr, flush=True)
        capture.start()
        capture.run()
        clean = True
    finally:
        capture.finish(clean)
    collector, header = capture.collector, capture.header
    report = build_report(collector.model, header.kernel, header.probes, header.start_ns)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        make_console().print(to_table(report))
    if note := capture.ended_note():
        print(note, file=sys.stderr)
    if collector.write_error is not None:
        raise collector.write_error
    print(f"gmemtrace: {collector.events_seen} events recorded to {output}", file=sys.stderr)
    status = capture.command_status()
    return EXIT_OK if status is None else status

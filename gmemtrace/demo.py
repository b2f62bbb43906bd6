"""`gmemtrace demo`: the built-in workload under the live view, checked against its ground
truth; a shipped recording, replayed, where tracing cannot run here."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from gmemtrace import SHIPPED_TRACES
from gmemtrace.collector import Collector
from gmemtrace.errors import EXIT_OK
from gmemtrace.live import Options, is_terminal, run
from gmemtrace.replay import ReplaySource
from gmemtrace.sinks.console import make_console
from gmemtrace.sinks.dashboard import ViewInfo
from gmemtrace.sinks.summary import summary
from gmemtrace.sinks.view import LiveView

DEMO_WORKLOAD = ["workload", "mixed", "--rate", "40", "--hold", "2", "--quiet"]


def demo(duration_s: float, force_replay: bool = False) -> int:
    """The built-in workload under the live view; a shipped recording where tracing can't run."""
    from gmemtrace.tracer import tracing_available

    mode = "live" if is_terminal() else "plain"
    reason = "--replay asked for it" if force_replay else ""
    if not reason:
        _, reason = tracing_available()
    if reason:
        return replay(DEMO_TRACE, duration_s, mode, reason)
    with tempfile.TemporaryDirectory() as tmp:
        truth = Path(tmp) / "truth.json"
        command = [sys.executable, "-m", "gmemtrace", *DEMO_WORKLOAD, "-o", str(truth)]
        return run(Options(command=command, duration_s=duration_s, mode=mode, truth=truth))


DEMO_TRACE = SHIPPED_TRACES["demo"]


def replay(path: Path, duration_s: float, mode: str, reason: str) -> int:
    """Show a recorded trace through the live view at its own pace."""
    from gmemtrace.capture import StopFlag
    from gmemtrace.tracefile import read_trace_file

    data = read_trace_file(path)
    console = make_console()
    note = f"replaying {path.name}: {reason}"
    console.print(f"gmemtrace: {note}", style="yellow")
    source = ReplaySource(data)
    info = ViewInfo(
        data.header.kernel, data.header.probes, "the recorded demo workload", 0.0, 0, note=note
    )
    stopping = StopFlag()
    deadline = time.monotonic() + duration_s

    def stop() -> bool:
        return stopping.requested or source.finished or time.monotonic() >= deadline

    collector = Collector(source)
    try:
        LiveView(collector, mode, 1.0, info, console, stop, clock_ns=source.now_ns).run()
    finally:
        collector.finish()
    if mode != "json":
        summary(console, collector, info, data.header.start_ns)
    return EXIT_OK

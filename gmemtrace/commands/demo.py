"""`gmemtrace demo`: the built-in workload under the live view, checked against its ground
truth; a shipped recording, replayed, where tracing cannot run here."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from gmemtrace import SHIPPED_TRACES
from gmemtrace.capture import Targets
from gmemtrace.commands.live import Options, is_terminal, show
from gmemtrace.commands.options import positive_float
from gmemtrace.model.frame import Mode
from gmemtrace.sinks.console import make_console
from gmemtrace.tracefile import read_trace_file

DEMO_WORKLOAD = ["workload", "mixed", "--rate", "40", "--hold", "2", "--quiet"]
DEMO_TRACE = SHIPPED_TRACES["demo"]


def demo(duration_s: float, force_replay: bool = False) -> int:
    """The built-in workload under the live view; a shipped recording where tracing can't run."""
    from gmemtrace.tracer import tracing_available

    mode = Mode.LIVE if is_terminal() else Mode.PLAIN
    reason = "--replay asked for it" if force_replay else ""
    if not reason:
        _, reason = tracing_available()
    if reason:
        return play_recording(DEMO_TRACE, duration_s, mode, reason)
    with tempfile.TemporaryDirectory() as tmp:
        truth = Path(tmp) / "truth.json"
        command = [sys.executable, "-m", "gmemtrace", *DEMO_WORKLOAD, "-o", str(truth)]
        return show(
            Options(Targets(command=command), duration_s=duration_s, mode=mode, truth=truth)
        )


def play_recording(path: Path, duration_s: float, mode: Mode, reason: str) -> int:
    """Show a recorded trace through the live view at its own pace."""
    data = read_trace_file(path)
    note = f"replaying {path.name}: {reason}"
    make_console().print(f"gmemtrace: {note}", style="yellow")
    return show(Options(duration_s=duration_s, mode=mode), replay=data, note=note)


class Demo:
    name = "demo"
    help = "the live view of the built-in workload (a recorded one without KVM/BPF)"
    description = ""

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-d", "--duration", type=positive_float, default=20.0, metavar="SECONDS"
        )
        parser.add_argument("--replay", action="store_true", help="replay the shipped trace anyway")

    def run(self, args: argparse.Namespace) -> int:
        return demo(args.duration, force_replay=args.replay)

"""The live view: `gmemtrace [--pid PID]... [--comm NAME] [-- CMD]` and `gmemtrace demo`.

One loop drains the probes every 50 ms into the model, redraws the dashboard
at a steady rate, and samples rates every interval; headless, it writes one
plain table or JSON object per interval instead. Whatever ends it (duration,
the command or the targets exiting, a signal), the probes are detached and a
summary is printed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.text import Text

from gmemtrace import SHIPPED_TRACES
from gmemtrace.collector import Collector
from gmemtrace.errors import EXIT_OK
from gmemtrace.events import Kind
from gmemtrace.model.rates import RateTracker
from gmemtrace.report import build_report, to_table
from gmemtrace.sinks.console import make_console
from gmemtrace.sinks.dashboard import Dashboard, ViewInfo
from gmemtrace.sinks.interval import interval_record, write_json, write_plain
from gmemtrace.tracefile import TraceData

PUMP_S = 0.05
REDRAW_HZ = 4


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


class ReplaySource:
    """A recorded trace played back at its own pace (for the demo without KVM or BPF)."""

    def __init__(
        self, data: TraceData, speed: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        kinds = data.events["kind"]
        self._events = data.events[(kinds != Kind.END) & (kinds != Kind.LOST)]
        self._t0_ns = int(self._events["ts_ns"][0]) if self._events.size else 0
        self._speed, self._clock = speed, clock
        self._started = clock()
        self._at = 0

    def now_ns(self) -> int:
        return self._t0_ns + int((self._clock() - self._started) * self._speed * 1e9)

    def poll(self) -> np.ndarray:
        end = int(np.searchsorted(self._events["ts_ns"], self.now_ns(), side="right"))
        batch: np.ndarray = self._events[self._at : end]
        self._at = max(self._at, end)
        return batch

    @property
    def finished(self) -> bool:
        return bool(self._at >= self._events.size)

    def lost(self) -> int:
        return 0

    def close(self) -> None:
        pass


@dataclass
class LiveView:
    """Draws one collector (live or replayed) while it runs; knows nothing about how its
    source was attached, and leaves finishing it to its driver."""

    collector: Collector
    options: Options
    info: ViewInfo
    console: Console
    stop_when: Callable[[], bool]
    clock: Callable[[], float] = time.monotonic
    clock_ns: Callable[[], int] = time.monotonic_ns
    command_output: Callable[[], bytes] = lambda: b""
    on_tick: Callable[[], None] = lambda: None

    def run(self) -> None:
        self.rates = RateTracker()
        self.started = self.clock()
        self.rates.sample(self.collector.model, self.started)
        self.next_sample = self.started + self.options.interval_s
        if self.options.mode == "live":
            self._run_live()
        else:
            self._run_headless()

    def _dashboard(self) -> Dashboard:
        self.info.elapsed_s = self.clock() - self.started
        self.info.now_ns = self.clock_ns()
        return Dashboard(self.collector.model, self.rates.latest, self.info)

    def _sample_due(self, now: float) -> bool:
        if now < self.next_sample:
            return False
        self.next_sample = now + self.options.interval_s
        return True

    def _run_live(self) -> None:
        next_draw = self.started
        with Live(
            self._dashboard(),
            console=self.console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live:

            def tick() -> None:
                nonlocal next_draw
                self.on_tick()
                output = self.command_output()
                if output:
                    live.console.print(
                        output.decode(errors="replace"),
                        end="",
                        markup=False,
                        highlight=False,
                        emoji=False,
                    )
                now = self.clock()
                if self._sample_due(now):
                    self.rates.sample(self.collector.model, now)
                if now >= next_draw:
                    live.update(self._dashboard(), refresh=True)
                    next_draw = now + 1 / REDRAW_HZ

            self.collector.run(self.stop_when, PUMP_S, on_tick=tick)
            self.rates.sample(self.collector.model, self.clock())
            live.update(self._dashboard(), refresh=True)

    def _run_headless(self) -> None:
        write = write_json if self.options.mode == "json" else write_plain

        def interval() -> None:
            now = self.clock()
            rates = self.rates.sample(self.collector.model, now)
            write(sys.stdout, interval_record(self.collector.model, rates, now - self.started))

        def tick() -> None:
            self.on_tick()
            if self._sample_due(self.clock()):
                interval()

        self.collector.run(self.stop_when, PUMP_S, on_tick=tick)
        interval()


def summary(
    console: Console, collector: Collector, info: ViewInfo, start_ns: int, truth: Path | None = None
) -> None:
    report = build_report(collector.model, info.kernel, info.probes, start_ns)
    console.print(to_table(report))
    if truth is not None:
        console.print(truth_verdict(report, json.loads(truth.read_text())))


def truth_verdict(report: dict[str, Any], truth: dict[str, Any]) -> Text:
    """One line: does what gmemtrace saw equal what the workload did?"""
    seen = {i["ino"]: i for i in report["inodes"]}
    wrong = [
        f"inode {i['ino']} {key} {seen.get(i['ino'], {}).get(key)} != {value}"
        for i in truth["inodes"]
        for key, value in i["counts"].items()
        if seen.get(i["ino"], {}).get(key) != value
    ]
    if not wrong:
        checked = sum(len(i["counts"]) for i in truth["inodes"])
        return Text(
            f"every count above equals the workload's ground truth "
            f"({len(truth['inodes'])} inodes, {checked} counters checked)",
            style="bold green",
        )
    return Text(f"differs from the ground truth: {'; '.join(wrong[:4])}", style="bold red")


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
    described = describe_targets(options, child.pid if child else None)
    info = ViewInfo(
        header.kernel, header.probes, described, 0.0, 0, options.sort, waiting_for=described
    )
    clean = False
    try:
        if headless:
            print(capture.ready_note("Tracing"), file=sys.stderr, flush=True)
        capture.start()
        view = LiveView(
            capture.collector,
            options,
            info,
            console,
            capture.should_stop,
            command_output=child.read_output if child else lambda: b"",
            on_tick=capture.follow_comm,
        )
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


def describe_targets(options: Options, child: int | None) -> str:
    parts = []
    if child is not None:
        parts.append(f"{' '.join(options.command)[:40]} (pid {child})")
    parts += [f"pid {p}" for p in options.pids]
    if options.comm:
        parts.append(f"comm {options.comm}")
    return ", ".join(parts) or "every process"


def is_terminal() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"


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
        LiveView(collector, Options(mode=mode), info, console, stop, clock_ns=source.now_ns).run()
    finally:
        collector.finish()
    if mode != "json":
        summary(console, collector, info, data.header.start_ns)
    return EXIT_OK

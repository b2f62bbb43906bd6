"""The view loop: over one entered capture (live or replayed), it pumps through the capture,
samples rates, and makes one frame (model/frame.py) per redraw for the app
(sinks/app.py) to draw; headless, it writes one plain table or JSON object per interval
instead. The live command (commands/live.py) and the demo run it; make screenshot and
the tests build the app from it too (view_of(...).make_app())."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console

from gmemtrace.capture import PUMP_S, Capture
from gmemtrace.events import Counter
from gmemtrace.model.frame import Frame, Mode, ViewInfo, make_frame
from gmemtrace.model.rates import RateTracker
from gmemtrace.model.state import Model
from gmemtrace.sinks.console import make_console
from gmemtrace.sinks.interval import interval_record, write_json, write_plain

if TYPE_CHECKING:
    from gmemtrace.sinks.app import LiveApp

REDRAW_HZ = 4  # frames a second, whatever the pump's pace


def view_of(
    capture: Capture,
    mode: Mode = Mode.LIVE,
    interval_s: float = 1.0,
    sort: Counter = Counter.HOST_FAULTS,
    console: Console | None = None,
    note: str = "",
) -> LiveView:
    """The view loop over an entered capture, as `gmemtrace` shows it."""
    child = capture.child
    header = capture.header
    if capture.replay is not None:
        described, waiting = "the recorded demo workload", ""
    else:
        described = capture.targets.describe(child.pid if child else None, width=40)
        waiting = described
    info = ViewInfo(header.kernel, header.probes, described, waiting_for=waiting, note=note)
    source = capture.source
    clock_ns = getattr(source, "now_ns", time.monotonic_ns)  # a replay runs on its own clock
    return LiveView(
        capture,
        mode,
        interval_s,
        info,
        console or make_console(),
        sort=sort,
        clock_ns=clock_ns,
        command_output=child.read_output if child else lambda: b"",
    )


@dataclass
class LiveView:
    """The view loop over one capture (live or replayed): it pumps through the capture,
    samples rates, and makes the frames the app draws; it leaves the capture's end to the
    capture."""

    capture: Capture
    mode: Mode
    interval_s: float
    info: ViewInfo
    console: Console
    sort: Counter = Counter.HOST_FAULTS
    clock: Callable[[], float] = time.monotonic
    clock_ns: Callable[[], int] = time.monotonic_ns
    command_output: Callable[[], bytes] = lambda: b""
    pump_s: float = PUMP_S["view"]
    next_draw: float = 0.0

    @property
    def model(self) -> Model:
        return self.capture.collector.model

    def run(self) -> None:
        self.begin()
        if self.mode is Mode.LIVE:
            self._run_live()
        else:
            self._run_headless()

    def begin(self) -> None:
        """Start the clocks: the first rate sample is now."""
        self.rates = RateTracker()
        self.started = self.clock()
        self.rates.sample(self.model, self.started)
        self.next_sample = self.started + self.interval_s

    def frame(self, sort: Counter, wanted: str = "") -> Frame:
        """The model as one redraw shows it now (sorted by `sort`, filtered by `wanted`)."""
        elapsed = self.clock() - self.started
        return make_frame(
            self.model, self.rates.latest, self.info, elapsed, self.clock_ns(), sort, wanted
        )

    def _sample_due(self, now: float) -> bool:
        if now < self.next_sample:
            return False
        self.next_sample = now + self.interval_s
        return True

    def redraw_due(self) -> bool:
        """Whether a frame is due (REDRAW_HZ a second, whatever the pump's pace)."""
        now = self.clock()
        if now < self.next_draw:
            return False
        self.next_draw = now + 1 / REDRAW_HZ
        return True

    def _run_live(self) -> None:
        """The Textual app (sinks/app.py) on the terminal, pumping from its timer. The
        command's output it showed is written out after it, to stay in the terminal."""
        app = self.make_app()
        app.run()
        sys.stdout.buffer.write(bytes(app.output_seen))
        sys.stdout.flush()
        self.drain()

    def make_app(self) -> LiveApp:
        """The app, fed by this view (run() runs it; a test drives it with Textual's pilot)."""
        from gmemtrace.sinks.app import LiveApp

        self.next_draw = self.started

        def tick() -> bool:
            if self.capture.step():
                return True
            now = self.clock()
            if self._sample_due(now):
                app.sampled(self.rates.sample(self.model, now))
            return False

        app = LiveApp(self, tick)
        return app

    def drain(self) -> None:
        """After the app: what is left in the ring, and the last rates."""
        self.capture.drain()
        self.rates.sample(self.model, self.clock())

    def _run_headless(self) -> None:
        write = write_json if self.mode is Mode.JSON else write_plain

        def interval() -> None:
            now = self.clock()
            rates = self.rates.sample(self.model, now)
            write(sys.stdout, interval_record(self.model, rates, now - self.started))

        def tick() -> None:
            if self._sample_due(self.clock()):
                interval()

        self.capture.run(self.pump_s, on_tick=tick)
        interval()

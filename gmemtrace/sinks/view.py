"""The view loop: the live app (sinks/app.py, Textual) fed while a collector runs, or one plain
table or JSON object per interval when headless. It draws; its driver attached the source."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console

from gmemtrace.collector import Collector
from gmemtrace.model.rates import RateTracker
from gmemtrace.sinks.dashboard import Dashboard, ViewInfo
from gmemtrace.sinks.interval import interval_record, write_json, write_plain

if TYPE_CHECKING:
    from gmemtrace.sinks.app import LiveApp

PUMP_S = 0.05
REDRAW_HZ = 4


@dataclass
class LiveView:
    """Draws one collector (live or replayed) while it runs; knows nothing about how its
    source was attached, and leaves finishing it to its driver."""

    collector: Collector
    mode: str  # live | plain | json
    interval_s: float
    info: ViewInfo
    console: Console
    stop_when: Callable[[], bool]
    clock: Callable[[], float] = time.monotonic
    clock_ns: Callable[[], int] = time.monotonic_ns
    command_output: Callable[[], bytes] = lambda: b""
    on_tick: Callable[[], None] = lambda: None
    pump_s: float = PUMP_S
    next_draw: float = 0.0

    def run(self) -> None:
        self.begin()
        if self.mode == "live":
            self._run_live()
        else:
            self._run_headless()

    def begin(self) -> None:
        """Start the clocks: the first rate sample is now."""
        self.rates = RateTracker()
        self.started = self.clock()
        self.rates.sample(self.collector.model, self.started)
        self.next_sample = self.started + self.interval_s

    def dashboard(self) -> Dashboard:
        self.info.elapsed_s = self.clock() - self.started
        self.info.now_ns = self.clock_ns()
        return Dashboard(self.collector.model, self.rates.latest, self.info)

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
            if self.stop_when():
                return True
            self.collector.pump()
            self.on_tick()
            now = self.clock()
            if self._sample_due(now):
                app.sampled(self.rates.sample(self.collector.model, now))
            return False

        app = LiveApp(self, tick)
        return app

    def drain(self) -> None:
        """After the app: what is left in the ring, and the last rates."""
        while self.collector.pump():
            pass
        self.rates.sample(self.collector.model, self.clock())

    def _run_headless(self) -> None:
        write = write_json if self.mode == "json" else write_plain

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

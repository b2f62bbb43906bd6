"""The view loop: the dashboard redrawn while a collector runs (rich), or one plain table or
JSON object per interval when headless. It draws; its driver attached the source."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live

from gmemtrace.collector import Collector
from gmemtrace.model.rates import RateTracker
from gmemtrace.sinks.dashboard import Dashboard, ViewInfo
from gmemtrace.sinks.interval import interval_record, write_json, write_plain

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

    def run(self) -> None:
        self.rates = RateTracker()
        self.started = self.clock()
        self.rates.sample(self.collector.model, self.started)
        self.next_sample = self.started + self.interval_s
        if self.mode == "live":
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
        self.next_sample = now + self.interval_s
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

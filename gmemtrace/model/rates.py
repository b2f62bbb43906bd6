"""Per-second rates: counter deltas between two samples of the model."""

from __future__ import annotations

from dataclasses import dataclass, field

from gmemtrace.events import RATED, Counter, Counts
from gmemtrace.model.state import Model

PerSecond = dict[Counter, float]


def _snapshot(counts: Counts) -> Counts:
    return dict(counts)


@dataclass
class Rates:
    """What changed per second between the last two samples."""

    interval_s: float = 0.0
    events_per_s: float = 0.0
    inodes: dict[int, PerSecond] = field(default_factory=dict)
    threads: dict[tuple[int, int], PerSecond] = field(default_factory=dict)


@dataclass
class RateTracker:
    """Samples a model at each interval and turns its counters into rates."""

    _last_s: float | None = None
    _events: int = 0
    _inodes: dict[int, Counts] = field(default_factory=dict)
    _threads: dict[tuple[int, int], Counts] = field(default_factory=dict)
    latest: Rates = field(default_factory=Rates)

    def sample(self, model: Model, now_s: float) -> Rates:
        inodes = {ino: _snapshot(s.counts) for ino, s in model.inodes.items()}
        threads = {key: _snapshot(c) for key, c in model.per_thread.items()}
        if self._last_s is not None and now_s > self._last_s:
            dt = now_s - self._last_s
            self.latest = Rates(
                dt,
                (model.events_applied - self._events) / dt,
                {k: _per_second(v, self._inodes.get(k), dt) for k, v in inodes.items()},
                {k: _per_second(v, self._threads.get(k), dt) for k, v in threads.items()},
            )
        self._last_s, self._events = now_s, model.events_applied
        self._inodes, self._threads = inodes, threads
        return self.latest


def _per_second(now: Counts, before: Counts | None, dt: float) -> PerSecond:
    before = before or dict.fromkeys(now, 0)
    return {k: (now[k] - before[k]) / dt for k in RATED}

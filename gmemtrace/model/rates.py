"""Per-second rates: counter deltas between two samples of the model."""

from __future__ import annotations

from dataclasses import dataclass, field

from gmemtrace.events import COUNTERS, RATED
from gmemtrace.model.state import Model

RATE_COUNTERS = RATED


def _snapshot(counts: dict[str, int]) -> dict[str, int]:
    return {k: counts[k] for k in COUNTERS}


@dataclass
class Rates:
    """What changed per second between the last two samples."""

    interval_s: float = 0.0
    events_per_s: float = 0.0
    inodes: dict[int, dict[str, float]] = field(default_factory=dict)
    threads: dict[tuple[int, int], dict[str, float]] = field(default_factory=dict)


@dataclass
class RateTracker:
    """Samples a model at each interval and turns its counters into rates."""

    _last_s: float | None = None
    _events: int = 0
    _inodes: dict[int, dict[str, int]] = field(default_factory=dict)
    _threads: dict[tuple[int, int], dict[str, int]] = field(default_factory=dict)
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


def _per_second(now: dict[str, int], before: dict[str, int] | None, dt: float) -> dict[str, float]:
    before = before or dict.fromkeys(now, 0)
    return {k: (now[k] - before[k]) / dt for k in RATE_COUNTERS}

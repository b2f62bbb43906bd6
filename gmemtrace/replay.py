"""A recorded trace as an event source, played back at its own pace (the demo without KVM
or BPF): the collector and the views cannot tell it from the kernel."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from gmemtrace.events import Kind
from gmemtrace.tracefile import TraceData


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

    def lost_refused(self) -> int:
        return 0

    def close(self) -> None:
        pass

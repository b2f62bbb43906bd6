"""The collection loop: drain the probes, feed the model, append to the recording.

Sources hand over event batches (live from the kernel, or replayed); the model
never knows which. Lost events are turned into LOST records in the same stream,
so the model and the recording agree on them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gmemtrace.model.state import Model
from gmemtrace.tracefile import TraceWriteError, TraceWriter, collector_records


class EventSource(Protocol):
    def poll(self) -> np.ndarray: ...

    def lost(self) -> int: ...

    def lost_refused(self) -> int: ...

    def close(self) -> None: ...


@dataclass
class Collector:
    source: EventSource
    model: Model = field(default_factory=Model)
    writer: TraceWriter | None = None
    listeners: list[Callable[[np.ndarray], None]] = field(default_factory=list)
    events_seen: int = 0
    _last_pump_ns: int = 0
    write_error: TraceWriteError | None = None  # the recording stopped; collecting goes on
    _lost_reported: int = 0
    # Held while a batch is applied: Session pumps from 2 threads; the exporter's scrapes
    # read the model under it. (Its pump loop is the capture's: gmemtrace/capture.py.)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pump(self) -> int:
        """One drain: returns how many events it moved."""
        with self.lock:
            return self._pump()

    def _pump(self) -> int:
        batch = self.source.poll()
        lost = self.source.lost()
        now = time.monotonic_ns()
        if lost > self._lost_reported:
            # The kernel dropped events since the last pump: say how many in all, and
            # from when (arg), so that the model knows which window's counts are low.
            self._lost_reported = lost
            marker = collector_records(
                lost, self.source.lost_refused(), self._last_pump_ns, at_ns=now
            )
            batch = np.concatenate([batch, marker])
        self._last_pump_ns = now
        if batch.size:
            self.model.apply(batch)
            if self.writer is not None:
                try:
                    self.writer.write(batch)
                except TraceWriteError as err:
                    self.write_error = err
                    self.writer.abandon()
                    self.writer = None
            for listener in self.listeners:
                listener(batch)
            self.events_seen += batch.size
        return int(batch.size)

    def finish(self, clean: bool = True) -> None:
        """Close the recording and detach the probes. Its tail (the lost count and, for a
        clean end, the END record whose time closes the recording's window) goes to the
        model and the file alike."""
        try:
            tail = collector_records(
                self.source.lost(), self.source.lost_refused(), self._last_pump_ns, end=clean
            )
            with self.lock:
                self.model.apply(tail)
            if self.writer is not None:
                self.writer.close(tail)
        finally:
            self.source.close()

"""Live capture for notebooks: `with gmemtrace.Session(cmd=[...]) as s: s.snapshot()`."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from gmemtrace.analysis import Trace
from gmemtrace.collector import Collector
from gmemtrace.events import EVENT_DTYPE
from gmemtrace.report import replay
from gmemtrace.tracefile import TraceData, TraceHeader, TraceWriter
from gmemtrace.tracer import GatedCommand, attach, check_pids, prepare


class Session:
    """Records in a background thread from `__enter__` to `__exit__`, which detaches
    everything (also when the block raises). `snapshot()` is the trace so far."""

    def __init__(
        self,
        pid: int | Sequence[int] | None = None,
        cmd: Sequence[str] | None = None,
        output: str | Path | None = None,
        poll_s: float = 0.05,
    ) -> None:
        self.pids = [pid] if isinstance(pid, int) else list(pid or [])
        self.cmd = list(cmd or [])
        self.output = Path(output) if output else None
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._batches: list[np.ndarray] = []
        self._command_output: list[bytes] = []
        self._child: GatedCommand | None = None
        self._collector: Collector | None = None
        self._thread: threading.Thread | None = None
        self._header: TraceHeader | None = None

    def __enter__(self) -> Session:
        check_pids(self.pids)
        setup = prepare()
        self._child = GatedCommand(self.cmd, capture=True) if self.cmd else None
        try:
            targets = ([self._child.pid] if self._child else []) + self.pids
            source = attach(setup, targets or None)
            self._header = setup.header(targets, self.cmd)
            writer = TraceWriter(self.output, self._header) if self.output else None
            self._collector = Collector(source, writer=writer, listeners=[self._batches.append])
            self._thread = threading.Thread(target=self._run, name="gmemtrace-session", daemon=True)
            self._thread.start()
            if self._child:
                self._child.start()
        except BaseException:
            self._shutdown(clean=False)
            raise
        return self

    def _run(self) -> None:
        assert self._collector is not None
        while not self._stop.is_set():
            with self._lock:
                self._collector.pump()
                if self._child is not None:
                    self._command_output.append(self._child.read_output())
            time.sleep(self.poll_s)

    @property
    def command_output(self) -> str:
        """What the command printed so far."""
        with self._lock:
            return b"".join(self._command_output).decode(errors="replace")

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the command to exit; its exit status (None: still running at timeout)."""
        if self._child is None:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._child.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(self.poll_s)
        time.sleep(2 * self.poll_s)  # let the loop drain the command's last events
        return self._child.returncode

    def snapshot(self) -> Trace:
        """The trace so far: the same DataFrames, maps and plots as a recorded one."""
        assert self._collector is not None and self._header is not None, "not started"
        with self._lock:
            self._collector.pump()
            events = (
                np.concatenate(self._batches) if self._batches else np.empty(0, dtype=EVENT_DTYPE)
            )
        data = TraceData(self._header, events, complete=False, problem="a live session")
        return Trace(self.output, data, replay(data))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._shutdown(clean=kind is None)

    def _shutdown(self, clean: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if self._collector is not None:
                with self._lock:
                    while self._collector.pump():
                        pass
                self._collector.finish(clean)
        finally:
            if self._child is not None:
                self._child.stop()

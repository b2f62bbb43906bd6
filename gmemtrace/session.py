"""Live capture for notebooks: `with gmemtrace.Session(cmd=[...]) as s: s.snapshot()`."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd

from gmemtrace.analysis import Trace
from gmemtrace.capture import PUMP_S, Capture, StopRule, Targets
from gmemtrace.events import EVENT_DTYPE
from gmemtrace.report import model_of
from gmemtrace.tracefile import TraceData


class Session:
    """Records in a background thread from `__enter__` to `__exit__`, which detaches
    everything (also when the block raises). `snapshot()` is the trace so far."""

    def __init__(
        self,
        pid: int | Sequence[int] | None = None,
        cmd: Sequence[str] | None = None,
        output: str | Path | None = None,
        poll_s: float = PUMP_S["session"],
    ) -> None:
        self.pids = [pid] if isinstance(pid, int) else list(pid or [])
        self.cmd = list(cmd or [])
        self.output = Path(output) if output else None
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._batches: list[np.ndarray] = []
        self._command_output: list[bytes] = []
        self._capture: Capture | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Session:
        # A notebook's kernel keeps its own signal handlers; the session ends at __exit__
        # (this thread waits for the command itself: wait()).
        stop = StopRule(handle_signals=False, follow_targets=False)
        stop.ended.append(self._stop.is_set)
        self._capture = capture = Capture(
            Targets(self.pids, command=self.cmd), output=self.output, capture_output=True,
            stop=stop,
        )  # fmt: skip
        capture.__enter__()
        try:
            capture.collector.listeners.append(self._batches.append)
            self._thread = threading.Thread(
                target=capture.run,
                args=(self.poll_s, self._read_output),
                name="gmemtrace-session",
                daemon=True,
            )
            self._thread.start()
        except BaseException:
            self._shutdown(clean=False)
            raise
        return self

    def _read_output(self) -> None:
        child = self._capture.child if self._capture else None
        if child is not None:
            self._command_output.append(child.read_output())

    @property
    def command_output(self) -> str:
        """What the command printed so far."""
        return b"".join(self._command_output).decode(errors="replace")

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the command to exit; its exit status (None: still running at timeout)."""
        child = self._capture.child if self._capture else None
        if child is None:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while child.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(self.poll_s)
        # Everything the command did is in the ring buffer once it has exited: drain it.
        assert self._capture is not None
        self._capture.drain()
        return child.returncode

    def snapshot(self) -> Trace:
        """The trace so far: the same DataFrames, maps and plots as a recorded one."""
        assert self._capture is not None, "not started"
        self._capture.collector.pump()
        events = np.concatenate(self._batches) if self._batches else np.empty(0, EVENT_DTYPE)
        data = TraceData(self._capture.header, events, complete=False, problem="a live session")
        return Trace(self.output, data, model_of(data), now_ns=time.monotonic_ns())

    def explain(self) -> pd.DataFrame:
        """Why each fault so far was refused, and each memory fault exit (Trace.explain)."""
        return self.snapshot().explain

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
        if self._capture is not None:
            self._read_output()
            self._capture.close(clean)

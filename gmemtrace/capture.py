"""One capture: requirements -> plan -> attach -> gated command -> writer -> collector -> stop
-> detach. `gmemtrace record`, the live view, `Session` and the demo drive it; none of
them repeats it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from gmemtrace.collector import Collector
from gmemtrace.command import GatedCommand
from gmemtrace.kernel.procfs import alive, processes_named
from gmemtrace.tracefile import TraceHeader, TraceWriter
from gmemtrace.tracer import RINGBUF_PAGES, check_pids, load, trace_header


class StopFlag:
    """SIGINT, SIGTERM and SIGHUP end a capture cleanly (the summary is still printed)."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._request)

    def _request(self, signum: int, frame: object) -> None:
        self.requested = True


class Capture:
    """Probes attached for the targets, a command started under them (held until then),
    events flowing into a collector (and a trace file), and the rule for when it ends."""

    def __init__(
        self,
        pids: list[int] | None = None,
        comm: str | None = None,
        command: list[str] | None = None,
        output: Path | None = None,
        tier: str | None = None,
        stream_hot: bool = True,
        capture_output: bool = False,
        duration_s: float | None = None,
        handle_signals: bool = True,
        ringbuf_pages: int = RINGBUF_PAGES,
    ) -> None:
        """Targets: `pids` (and their descendants), processes named `comm` (also later
        ones), the `command` started here; none of them: every process. `stream_hot`: one
        record per fault and page (a recording); False, runs coalesced in the kernel.
        `ringbuf_pages`: the ring buffer's size (mapped here, so resident here too)."""
        self.pids = list(pids or [])
        self.comm = comm
        self.command = list(command or [])
        check_pids(self.pids)
        loaded = load(tier, ringbuf_pages)
        try:
            self.child = GatedCommand(self.command, capture_output) if self.command else None
        except BaseException:
            loaded.program.cleanup()
            raise
        try:
            self.targets = ([self.child.pid] if self.child else []) + self.pids
            trace_all = not self.targets and not comm
            self.source = loaded.source(None if trace_all else self.targets, stream_hot)
            comm_pids: list[int] = []
            try:
                if comm:  # the kernel follows execs into the name first: no gap to fall in
                    self.source.follow_comm(comm)
                    comm_pids = processes_named(comm)
                    self.source.add_targets(comm_pids)
                self.header: TraceHeader = trace_header(
                    loaded.plan, self.targets + comm_pids, self.command
                )
                writer = TraceWriter(output, self.header) if output else None
            except BaseException:
                self.source.close()
                raise
        except BaseException:
            if self.child is not None:
                self.child.end()
            raise
        self.collector = Collector(self.source, writer=writer)
        self._stopping = StopFlag() if handle_signals else None
        self._deadline = time.monotonic() + duration_s if duration_s else None

    def start(self) -> None:
        """Let the command run: everything is attached."""
        if self.child is not None:
            self.child.start()

    def should_stop(self) -> bool:
        """The one stop rule: a signal, the duration, the command exiting, or every --pid
        gone (with none of those: until a signal or the duration)."""
        if self._stopping is not None and self._stopping.requested:
            return True
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return True
        if self.child is not None:
            return self.child.poll() is not None
        return bool(self.pids) and not any(alive(p) for p in self.pids)

    def follow_comm(self) -> None:
        """Trace processes named --comm that started since the last call."""
        if self.comm:
            new = [p for p in processes_named(self.comm) if p not in self.source.pids]
            if new:
                self.source.add_targets(new)

    def run(self, interval_s: float = 0.02) -> None:
        """Collect until the stop rule says so (record and headless drivers)."""
        self.collector.run(self.should_stop, interval_s, on_tick=self.follow_comm)

    def finish(self, clean: bool = True) -> None:
        """Close the recording, detach every probe, and end the command if it still runs."""
        try:
            self.collector.finish(clean)
        finally:
            if self.child is not None:
                self.child.end()

    def ready_note(self, doing: str, into: Path | str | None = None) -> str:
        """The line that says tracing is attached, as bcc's tools say "Tracing... Hit Ctrl-C
        to end." (not an error: no "gmemtrace:" before it)."""
        what = [f"{self.command[0]} (pid {self.child.pid})"] if self.child else []
        what += [f"pid {p}" for p in self.pids]
        what += [f"comm {self.comm}"] if self.comm else []
        where = f" to {into}" if into else ""
        return f"{doing} {', '.join(what) or 'every process'}{where}... Ctrl-C to end."

    def command_status(self) -> int | None:
        """The command's exit status when it ended by itself (None: no command, or gmemtrace
        ended it)."""
        if self.child is None or self.child.ended_by:
            return None
        return self.child.exit_status

    def ended_note(self) -> str:
        """What gmemtrace did to the command, if it ended it ("" otherwise)."""
        if self.child is None or not self.child.ended_by:
            return ""
        return (
            f"gmemtrace: ended {self.command[0]} (pid {self.child.pid}) and its process group "
            f"with {self.child.ended_by}"
        )

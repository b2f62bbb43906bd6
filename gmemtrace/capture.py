"""One capture: requirements -> plan -> attach -> gated command -> writer -> collector -> stop
-> detach. Every driver (the live view, `record`, the exporter, `Session`, the demo) enters
it as a context manager and adds nothing of its own: when a capture ends, how often it is
drained, what it says when ready and what it did to the command are decided here.

    with Capture(Targets(command=argv), output=path) as capture:  # attached, command running
        capture.run(PUMP_S["record"])                              # until the stop rule says
    # detached, the recording closed (cleanly unless the block raised), signals restored
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

from gmemtrace.collector import Collector, EventSource
from gmemtrace.gated import GatedCommand
from gmemtrace.kernel.procfs import alive, processes_named
from gmemtrace.probes.program import ProbeProgram
from gmemtrace.tracefile import TraceData, TraceHeader, TraceWriter
from gmemtrace.tracer import check_pids, load, trace_header

# How often each driver drains the ring buffer into the model, in one place:
PUMP_S = {
    # every event kept: drained 50 times a second, so the ring (64 MiB, about 0.75 s of a
    # fault storm) always has room for the time a batch takes to reach the disk
    "record": 0.02,
    # counted in the kernel (hot events in maps, rare ones in the ring): 10 reads a second
    # keep the maps current for a view redrawn 4 times a second (sinks/app.py) and a
    # notebook's snapshot
    "view": 0.1,
    "session": 0.1,
    # counted, for a scrape every few seconds: 4 reads a second are enough and cost an
    # always-on agent fewer wake-ups than the view
    "export": 0.25,
}

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DRAIN_PUMPS = 16  # at the end: the ring as it is, and what arrives while it is read


@dataclass
class StopRule:
    """The one rule for when a capture ends: a signal (SIGINT, SIGTERM, SIGHUP: a clean end,
    the summary still printed), the duration, or what the capture says ended (the command
    exiting, every --pid gone, a replayed trace played out)."""

    duration_s: float | None = None
    handle_signals: bool = True  # False: the caller keeps its own (a notebook's kernel)
    # False: the command or the pids ending (a replay played out) do not end it
    follow_targets: bool = True
    signalled: bool = False
    ended: list[Callable[[], bool]] = field(default_factory=list)
    _deadline: float | None = None
    _previous: dict[int, object] = field(default_factory=dict)
    _installed: int = 0  # install() calls not yet matched by restore()

    def install(self) -> None:
        """From now on the signals end the capture (until the matching restore(); a rule
        already installed, by a driver that must answer signals before the capture
        starts, stays as it is)."""
        self._installed += 1
        if self._installed > 1:
            return
        if self.handle_signals:
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._request)

    def restore(self) -> None:
        """The signal handlers as they were before the first install()."""
        self._installed -= 1
        if self._installed > 0:
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def __enter__(self) -> StopRule:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def start_clock(self) -> None:
        """The duration counts from now (the capture is attached)."""
        self._deadline = time.monotonic() + self.duration_s if self.duration_s else None

    def _request(self, signum: int, frame: FrameType | None) -> None:
        self.signalled = True

    def __call__(self) -> bool:
        if self.signalled:
            return True
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return True
        return any(check() for check in self.ended)


@dataclass
class Targets:
    """What a capture traces: `pids` (and their descendants), processes named `comm` (also
    later ones), the `command` started under the probes; none of them: every process."""

    pids: list[int] = field(default_factory=list)
    comm: str | None = None
    command: list[str] = field(default_factory=list)

    def describe(self, child: int | None = None, width: int = 0) -> str:
        """ "sh -c ... (pid 12), pid 7, comm qemu" ("every process" with none)."""
        command = " ".join(self.command)
        parts = [f"{command[:width] if width else self.command[0]} (pid {child})"] if child else []
        parts += [f"pid {p}" for p in self.pids]
        parts += [f"comm {self.comm}"] if self.comm else []
        return ", ".join(parts) or "every process"


class Capture:
    """Probes attached for the targets (or a recorded trace replayed), the command started
    under them, events flowing into a collector (and a trace file), until the stop rule
    says so. Entering attaches and starts the command; leaving detaches, closes the
    recording (cleanly when the block did not raise), ends the command if it still runs
    and restores the signal handlers."""

    # Set on entering (the block reads them, and so do the driver's last words after it):
    source: EventSource
    header: TraceHeader
    collector: Collector

    def __init__(
        self,
        targets: Targets | None = None,
        *,
        output: Path | None = None,
        tier: str | None = None,
        stream_hot: bool = True,
        capture_output: bool = False,
        stop: StopRule | None = None,
        ringbuf_pages: int | None = None,
        ready: str | None = None,
        into: Path | str | None = None,
        replay: TraceData | None = None,
        replay_speed: float = 1.0,
    ) -> None:
        """`stream_hot`: one record per fault and page (a recording); False, hot events
        counted in the kernel (probes/program.py: counting mode). `ringbuf_pages`: the ring
        buffer's size (tracer.RINGBUF_PAGES when None). `ready`: say "<ready> <targets> [to
        <into>]... Ctrl-C to end." on stderr once attached (None: say nothing). `replay`:
        play this trace instead, at `replay_speed` times its own pace."""
        self.targets = targets or Targets()
        self.output, self.tier, self.stream_hot = output, tier, stream_hot
        self.capture_output, self.ringbuf_pages = capture_output, ringbuf_pages
        self.stop = stop or StopRule()
        self.ready, self.into = ready, into
        self.replay, self.replay_speed = replay, replay_speed
        self.child: GatedCommand | None = None

    # --- the lifecycle -------------------------------------------------------------
    def __enter__(self) -> Capture:
        # First: a signal while the probes load still ends the capture cleanly.
        self.stop.install()
        try:
            if self.replay is not None:
                self._play(self.replay)
            else:
                self._attach()
            self.stop.start_clock()
            if self.ready is not None:
                print(self.ready_note(), file=sys.stderr, flush=True)
            if self.child is not None:
                self.child.start()  # everything is attached: let the command run
        except BaseException:
            self.close(clean=False)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(clean=kind is None)

    def close(self, clean: bool) -> None:
        """Close the recording, detach every probe, end the command if it still runs."""
        try:
            if hasattr(self, "collector"):
                self.collector.finish(clean)
            elif hasattr(self, "source"):
                self.source.close()
        finally:
            try:
                if self.child is not None:
                    self.child.end()
            finally:
                self.stop.restore()

    def _attach(self) -> None:
        targets = self.targets
        check_pids(targets.pids)
        loaded = load(self.tier, self.ringbuf_pages)
        try:
            if targets.command:
                self.child = GatedCommand(targets.command, self.capture_output)
        except BaseException:
            loaded.program.cleanup()
            raise
        started = ([self.child.pid] if self.child else []) + targets.pids
        trace_all = not started and not targets.comm
        self.source = source = loaded.source(None if trace_all else started, self.stream_hot)
        comm_pids: list[int] = []
        if targets.comm:  # the kernel follows execs into the name first: no gap to fall in
            source.follow_comm(targets.comm)
            comm_pids = processes_named(targets.comm)
            source.add_targets(comm_pids)
        self.header = trace_header(loaded.plan, started + comm_pids, targets.command)
        writer = TraceWriter(self.output, self.header) if self.output else None
        self.collector = Collector(source, writer=writer)
        if not self.stop.follow_targets:
            return
        if self.child is not None:
            child = self.child
            self.stop.ended.append(lambda: child.poll() is not None)
        elif targets.pids:
            self.stop.ended.append(lambda: not any(alive(p) for p in targets.pids))

    def _play(self, data: TraceData) -> None:
        from gmemtrace.replay import ReplaySource

        self.source = source = ReplaySource(data, self.replay_speed)
        self.header = data.header
        self.collector = Collector(source)
        if self.stop.follow_targets:
            self.stop.ended.append(lambda: source.finished)

    # --- while it runs -------------------------------------------------------------
    def step(self) -> bool:
        """One round: True once the capture should end; else drain the ring and follow
        --comm into processes started since the last round."""
        if self.stop():
            return True
        self.collector.pump()
        self._follow_comm()
        return False

    def run(self, interval_s: float, on_tick: Callable[[], None] = lambda: None) -> None:
        """Rounds every `interval_s` (each followed by `on_tick()`) until the stop rule says
        so; then what is left in the ring."""
        while True:
            started = time.monotonic()
            if self.step():
                break
            on_tick()
            time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
        self.drain()

    def drain(self) -> None:
        """What the ring buffer holds now, into the model: pumps until one finds nothing,
        a few at most. A traced process still running keeps adding (in counting mode each
        pump reads the counts it made since): the end is now, not a chase."""
        for _ in range(DRAIN_PUMPS):
            if not self.collector.pump():
                break

    def _follow_comm(self) -> None:
        comm, source = self.targets.comm, self.source
        if comm and isinstance(source, ProbeProgram):
            new = [p for p in processes_named(comm) if p not in source.pids]
            if new:
                source.add_targets(new)

    # --- what it says ----------------------------------------------------------------
    def ready_note(self) -> str:
        """The line that says tracing is attached, as bcc's tools say "Tracing... Hit Ctrl-C
        to end." (not an error: no "gmemtrace:" before it)."""
        what = self.targets.describe(self.child.pid if self.child else None)
        where = f" to {self.into}" if self.into else ""
        return f"{self.ready} {what}{where}... Ctrl-C to end."

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
            f"gmemtrace: ended {self.targets.command[0]} (pid {self.child.pid}) and its process "
            f"group with {self.child.ended_by}"
        )

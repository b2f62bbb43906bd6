"""Getting ready to trace: the probes loaded and attached by the loader child (planned there,
probes/plan.py), the trace's header, the targets checked."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

from gmemtrace.errors import GmemtraceError, UsageError
from gmemtrace.probes import loader
from gmemtrace.probes import plan as probe_plan
from gmemtrace.probes.maps import HeldProgram
from gmemtrace.probes.program import ProbeProgram, possible_cpus
from gmemtrace.tracefile import TraceHeader


def trace_header(
    plan: list[probe_plan.Choice], targets: list[int], command: list[str]
) -> TraceHeader:
    return TraceHeader(
        kernel=platform.release(),
        start_ns=time.monotonic_ns(),
        start_unix=time.time(),
        probes=probe_plan.plan_probes(plan),
        targets=targets,
        command=command,
    )


def tracing_available() -> tuple[bool, str]:
    """Whether this machine can trace guest_memfd live (and if not, why not)."""
    if not os.path.exists("/dev/kvm"):
        return False, "no /dev/kvm on this machine"
    try:
        probe_plan.prepare()
    except GmemtraceError as err:
        return False, str(err)
    return True, ""


def check_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise UsageError(f"no process with pid {pid}") from None
        except PermissionError:
            pass


# Ring buffer pages: 64 MiB holds about 0.75 s of a fault storm's events, room
# for a consumer that pauses to write its batch to disk.
RINGBUF_PAGES = 16384  # every capture but the exporter (its own: exporter.EXPORT_RINGBUF_PAGES)


@dataclass
class Loaded:
    """The probes, loaded and attached by the loader child (gmemtrace/probes/loader.py),
    and the plan it made: what a capture starts from."""

    program: HeldProgram
    plan: list[probe_plan.Choice]
    ringbuf_pages: int

    def source(self, pids: list[int] | None, stream_hot: bool = True) -> ProbeProgram:
        """The event source for `pids` (None: every process; []: nobody yet)."""
        try:
            return ProbeProgram(self.program, pids, stream_hot, self.ringbuf_pages)
        except BaseException:
            self.program.cleanup()
            raise


def load(force_tier: str | None = None, ringbuf_pages: int | None = None) -> Loaded:
    """Check every requirement, plan, compile, load and attach, in a child that hands the
    program over: this process never holds bcc (errors as prepare() raises them)."""
    pages = ringbuf_pages or RINGBUF_PAGES
    program, plan = loader.load(force_tier, pages, len(possible_cpus()))
    return Loaded(program, plan, pages)

"""Getting ready to trace: requirements met, probes planned, then attached."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from gmemtrace.errors import GmemtraceError, UsageError
from gmemtrace.kernel import headers as kheaders
from gmemtrace.kernel.btf import Btf
from gmemtrace.kernel.host import Host
from gmemtrace.probes import loader
from gmemtrace.probes import plan as probe_plan
from gmemtrace.probes.maps import HeldProgram
from gmemtrace.probes.tracepoints import TracepointSource, possible_cpus
from gmemtrace.requirements import require_all
from gmemtrace.tracefile import TraceHeader


@dataclass
class Setup:
    headers: kheaders.Headers
    btf: Btf
    tracefs: Path
    plan: list[probe_plan.Choice]


def trace_header(
    plan: list[probe_plan.Choice], targets: list[int], command: list[str]
) -> TraceHeader:
    return TraceHeader(
        kernel=platform.release(),
        start_ns=time.monotonic_ns(),
        start_unix=time.time(),
        probes=probe_plan.plan_json(plan),
        targets=targets,
        command=command,
    )


def prepare(force_tier: str | None = None, host: Host | None = None) -> Setup:
    """Check every requirement of tracing and plan the probes; raise the first problem,
    in doctor's words, naming its fix (gmemtrace/requirements.py)."""
    host = host or Host()
    met = require_all(host)
    loads = probe_plan.program_types(met.headers, met.btf, met.tracefs)
    plan = probe_plan.make_plan(met.btf, loads, met.tracefs, force_tier)
    probe_plan.require_tier(plan, force_tier)
    return Setup(met.headers, met.btf, met.tracefs, plan)


def tracing_available() -> tuple[bool, str]:
    """Whether this machine can trace guest_memfd live (and if not, why not)."""
    if not os.path.exists("/dev/kvm"):
        return False, "no /dev/kvm on this machine"
    try:
        prepare()
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
RINGBUF_PAGES = 16384


@dataclass
class Loaded:
    """The probes, loaded and attached by the loader child (gmemtrace/probes/loader.py),
    and the plan it made: what a capture starts from."""

    program: HeldProgram
    plan: list[probe_plan.Choice]
    ringbuf_pages: int

    def source(self, pids: list[int] | None, stream_hot: bool = True) -> TracepointSource:
        """The event source for `pids` (None: every process; []: nobody yet)."""
        try:
            return TracepointSource.from_program(self.program, pids, stream_hot, self.ringbuf_pages)
        except BaseException:
            self.program.cleanup()
            raise


def load(force_tier: str | None = None, ringbuf_pages: int = RINGBUF_PAGES) -> Loaded:
    """Check every requirement, plan, compile, load and attach, in a child that hands the
    program over: this process never holds bcc (errors as prepare() raises them)."""
    program, plan = loader.load(force_tier, ringbuf_pages, len(possible_cpus()))
    return Loaded(program, plan, ringbuf_pages)


def attach(setup: Setup, pids: list[int] | None, stream_hot: bool = True) -> TracepointSource:
    """Load and attach the probes here for `pids` (None: every process; []: nobody yet)."""
    return TracepointSource(
        setup.headers,
        setup.btf,
        pids,
        stream_hot=stream_hot,
        ringbuf_pages=RINGBUF_PAGES,
        functions=probe_plan.function_events(setup.plan),
        tracefs=setup.tracefs,
    )

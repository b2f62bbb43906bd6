"""Getting ready to trace: requirements checked, probes planned and attached, command started.

Each missing requirement is one GmemtraceError naming the fix (the words of
`gmemtrace doctor`).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from gmemtrace.errors import GmemtraceError, UsageError
from gmemtrace.kernel import caps, tracefs
from gmemtrace.kernel import headers as kheaders
from gmemtrace.kernel.btf import Btf
from gmemtrace.kernel.host import Host
from gmemtrace.probes import plan as probe_plan
from gmemtrace.probes.bcc_backend import BCC_FIX, import_bcc
from gmemtrace.probes.tracepoints import TracepointSource
from gmemtrace.tracefile import TraceHeader


@dataclass
class Setup:
    headers: kheaders.Headers
    btf: Btf
    tracefs: Path
    plan: list[probe_plan.Choice]

    def header(self, targets: list[int], command: list[str]) -> TraceHeader:
        return TraceHeader(
            kernel=platform.release(),
            start_ns=time.monotonic_ns(),
            start_unix=time.time(),
            probes=probe_plan.plan_json(self.plan),
            targets=targets,
            command=command,
        )


def prepare(force_tier: str | None = None, host: Host | None = None) -> Setup:
    """Check every requirement of tracing and plan the probes; raise the first problem,
    in doctor's words, naming its fix."""
    host = host or Host()
    missing = caps.missing_for_tracing(host.proc_status)
    if missing:
        raise GmemtraceError(
            f"tracing needs {', '.join(missing)}; run it as root (sudo gmemtrace ...)"
        )
    try:
        import_bcc()
    except GmemtraceError:
        raise GmemtraceError(f"bcc is not installed; fix: {BCC_FIX}") from None
    try:
        btf = Btf.load(host.btf)
    except GmemtraceError as err:
        raise GmemtraceError(f"{err}; fix: a kernel built with CONFIG_DEBUG_INFO_BTF=y") from None
    mounted = tracefs.ensure_mounted(host.mounts, host.tracefs_mountpoint)
    if mounted.mountpoint is None:
        raise GmemtraceError(
            f"tracefs is not mounted ({mounted.error}); fix: mount -t tracefs nodev "
            f"{host.tracefs_mountpoint}"
        )
    found = kheaders.resolve(environ=host.environ, lib_modules=host.lib_modules, src=host.usr_src)
    if not found.usable:
        raise GmemtraceError(
            f"no kernel headers for bcc ({found.detail}); fix: apt-get install "
            "linux-headers-$(dpkg --print-architecture)"
        )
    loads = probe_plan.program_types(found, btf)
    plan = probe_plan.make_plan(btf, loads, mounted.mountpoint, force_tier)
    probe_plan.require_tier(plan, force_tier)
    return Setup(found, btf, mounted.mountpoint, plan)


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


def attach(setup: Setup, pids: list[int] | None, stream_hot: bool = True) -> TracepointSource:
    """Load and attach the probes for `pids` (None: every process; []: nobody yet)."""
    return TracepointSource(
        setup.headers,
        setup.btf,
        pids,
        stream_hot=stream_hot,
        ringbuf_pages=RINGBUF_PAGES,
        functions=probe_plan.function_events(setup.plan),
        tracefs=setup.tracefs,
    )

"""Getting ready to trace: requirements checked, probes planned and attached, command started.

Each missing requirement is one GmemtraceError naming the fix (the words of
`gmemtrace doctor`).
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
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


class GatedCommand:
    """A command forked now but held before exec, so tracing is attached before it runs."""

    def __init__(self, argv: list[str], capture: bool = False) -> None:
        """`capture`: the command's stdout and stderr come back through `self.output`."""
        if not argv:
            raise UsageError("no command given after --")
        self.argv = argv
        read_end, self._gate = os.pipe()
        out_read, out_write = os.pipe() if capture else (-1, -1)
        self.pid = os.fork()
        if self.pid == 0:  # the child: wait for the gate, then become the command
            os.close(self._gate)
            try:
                if capture:
                    os.close(out_read)
                    os.dup2(out_write, 1)
                    os.dup2(out_write, 2)
                    os.close(out_write)
                os.read(read_end, 1)
                os.execvp(argv[0], argv)
            except OSError as err:
                os.write(2, f"gmemtrace: error: cannot run {argv[0]}: {err.strerror}\n".encode())
            os._exit(127)
        os.close(read_end)
        self.output: int | None = None
        if capture:
            os.close(out_write)
            os.set_blocking(out_read, False)
            self.output = out_read
        self.returncode: int | None = None

    def read_output(self) -> bytes:
        """What the command wrote since the last call (captured mode)."""
        if self.output is None:
            return b""
        chunks = []
        while True:
            try:
                chunk = os.read(self.output, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def start(self) -> None:
        os.write(self._gate, b"go")
        os.close(self._gate)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def stop(self) -> None:
        """On an early exit of gmemtrace: end the command too, never leave it waiting."""
        if self.poll() is None:
            with contextlib.suppress(OSError):
                os.close(self._gate)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
            self.returncode = -signal.SIGTERM

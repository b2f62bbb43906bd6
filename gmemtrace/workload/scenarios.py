"""Built-in scenarios: each a short, deterministic sequence of real guest_memfd work."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from gmemtrace.kernel.kvm import GUEST_MEMFD_FLAG_INIT_SHARED as INIT_SHARED
from gmemtrace.kernel.kvm import GUEST_MEMFD_FLAG_MMAP as MMAP
from gmemtrace.workload import guest
from gmemtrace.workload.runner import Workload


@dataclass(frozen=True)
class Params:
    """Scenario knobs from the command line; None means the scenario's default."""

    pages: int | None = None
    rounds: int | None = None
    rate: float | None = None
    pattern: str = "sequential"
    pause_after_map_s: float = 0.0  # stop once memory is mapped, for tracers attaching late
    wait_signal: bool = False  # ... or until SIGUSR1 arrives (benchmarks: attach, then go)


def mixed(wl: Workload, p: Params) -> None:
    """A bit of everything: faults, punch, re-fault, fallocate, guest writes, SIGBUS, conversion."""
    pages = p.pages or 64
    shared = wl.guest_memfd(pages, MMAP | INIT_SHARED)
    host = wl.map(shared)
    touched = min(40, pages)
    wl.host_touch(host, 0, touched, p.pattern, p.rate)
    wl.punch(shared, 8, min(8, pages - 8))
    wl.zap(host, touched - 8, 8)
    wl.host_touch(host, touched - 8, 8, p.pattern, p.rate)  # re-fault: no new allocation

    vm_mem = wl.guest_memfd(32, MMAP | INIT_SHARED)
    vm_host = wl.map(vm_mem)
    wl.fallocate(vm_mem, 0, 6)
    wl.bind(1, 0, vm_mem, vm_host)
    wl.run_guest([10, 11, 12, 13])
    wl.facts["guest_writes_seen"] = all(
        wl.host_read(vm_host, page) == guest.marker(page).to_bytes(2, "little")
        for page in (10, 11, 12, 13)
    )

    private = wl.guest_memfd(16, MMAP)
    wl.facts["child_signal"] = signal.Signals(wl.touch_in_child(wl.map(private), 2)).name

    wl.convert(shared, 0, 4, to_private=True)
    wl.convert(vm_mem, 10, 2, to_private=True)
    wl.convert(vm_mem, 10, 2, to_private=False)


def fault_storm(wl: Workload, p: Params) -> None:
    """A steady, high host fault rate: N pages x rounds, re-faulting via MADV_DONTNEED and punch."""
    pages, rounds = p.pages or 4096, p.rounds or 10
    gmem = wl.guest_memfd(pages, MMAP | INIT_SHARED)
    host = wl.map(gmem)
    start = time.perf_counter()
    for r in range(rounds):
        wl.host_touch(host, 0, pages, p.pattern, p.rate)
        if r + 1 < rounds:
            if r % 2:
                wl.punch(gmem, 0, pages)  # frees: the next round allocates again
            else:
                wl.zap(host, 0, pages)  # keeps the pages: the next round only re-maps
    elapsed = time.perf_counter() - start
    faults = wl.truth[gmem.ino].counts["host_faults"]
    wl.facts["host_faults_per_s"] = round(faults / elapsed) if elapsed else 0
    wl.facts["storm_seconds"] = round(elapsed, 6)


def private_touch(wl: Workload, p: Params) -> None:
    """Forked children touch private guest_memfd pages and die of SIGBUS, one page each."""
    pages = p.pages or 4
    gmem = wl.guest_memfd(max(pages, 1) * 2, MMAP)
    host = wl.map(gmem)
    signals = [wl.touch_in_child(host, 2 * i) for i in range(pages)]
    wl.facts["children_killed_by_sigbus"] = sum(s == signal.SIGBUS for s in signals)


def conversions(wl: Workload, p: Params) -> None:
    """Shared<->private conversion requests over bound and unbound ranges, both directions."""
    pages = p.pages or 32
    gmem = wl.guest_memfd(pages, MMAP | INIT_SHARED)
    host = wl.map(gmem)
    wl.host_touch(host, 0, pages // 2)
    wl.bind(1, 0, gmem, host)
    for _ in range(p.rounds or 2):
        wl.convert(gmem, 0, pages // 4, to_private=True)
        wl.convert(gmem, pages // 4, pages // 4, to_private=True)
        wl.convert(gmem, 0, pages // 4, to_private=False)
    wl.convert(gmem, pages - 1, 2, to_private=True)  # beyond the end: the kernel must refuse


def guest_driven(wl: Workload, p: Params) -> None:
    """The vCPU writes guest pages; a punch then makes the next guest pass fault them in again."""
    pages = min(p.pages or 32, 128)
    gmem = wl.guest_memfd(128, MMAP | INIT_SHARED)
    host = wl.map(gmem)
    wl.bind(1, 0, gmem, host)
    for r in range(p.rounds or 2):
        wl.run_guest(list(range(pages)))
        if r + 1 < (p.rounds or 2):
            wl.punch(gmem, 0, pages // 2)
    wl.facts["guest_writes_seen"] = all(
        wl.host_read(host, page) == guest.marker(page).to_bytes(2, "little")
        for page in range(pages)
    )


SCENARIOS: dict[str, Callable[[Workload, Params], None]] = {
    "mixed": mixed,
    "fault-storm": fault_storm,
    "private-touch": private_touch,
    "conversions": conversions,
    "guest": guest_driven,
}

"""Built-in scenarios: each a short, deterministic sequence of real guest_memfd work."""

from __future__ import annotations

import ctypes
import errno
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from gmemtrace.errors import GmemtraceError
from gmemtrace.events import Counter
from gmemtrace.kernel import kvm
from gmemtrace.kernel.uapi import GUEST_MEMFD_FLAG_INIT_SHARED as INIT_SHARED
from gmemtrace.kernel.uapi import GUEST_MEMFD_FLAG_MMAP as MMAP
from gmemtrace.kernel.uapi import KVM_X86_SW_PROTECTED_VM, PAGE_SIZE
from gmemtrace.workload import guest
from gmemtrace.workload.runner import Workload
from gmemtrace.workload.vmm import Vm


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
    faults = wl.truth[gmem.ino].counts[Counter.HOST_FAULTS]
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


def coco(wl: Workload, p: Params) -> None:
    """A confidential VM's memory, as on SNP/TDX hosts, on a software-protected VM: private
    memory in a guest_memfd, converted by KVM_SET_MEMORY_ATTRIBUTES; guest faults (with and
    without allocation), a punch after conversion to shared, and memory fault exits that
    the VMM answers by converting and resuming."""
    pages = min(p.pages or 32, 64)
    base = COCO_GPA // PAGE_SIZE
    gmem = wl.guest_memfd(pages, 0)  # no INIT_SHARED: private memory
    wl.bind_private(1, COCO_GPA, gmem)
    wl.convert(gmem, 0, pages, to_private=True)  # as a VMM does at boot: all of it private
    touched = min(16, pages)
    wl.run_guest([base + i for i in range(touched)])  # guest faults that allocate
    quarter = touched // 4
    wl.convert(gmem, 2 * quarter, quarter, to_private=False)  # the guest shares a range
    wl.punch(gmem, 2 * quarter, quarter)  # the VMM discards its private copy, as QEMU does
    wl.run_guest([base + i for i in range(quarter, touched)])  # shared ones: not guest_memfd
    wl.facts["shared_writes_seen"] = all(
        wl.read_shared(base + i) == guest.marker(base + i).to_bytes(2, "little")
        for i in range(2 * quarter, 3 * quarter)
    )
    for _ in range(p.rounds or 1):  # a round trip without a punch: the pages stay allocated
        wl.convert(gmem, quarter, quarter, to_private=False)
        wl.convert(gmem, quarter, quarter, to_private=True)
        wl.run_guest([base + i for i in range(quarter, 2 * quarter)])  # faults, no allocation
    # Private frames without a guest_memfd behind them: KVM cannot serve them privately
    # and exits to the VMM (KVM_EXIT_MEMORY_FAULT), which converts them and resumes.
    plain = wl.vm.add_anonymous_slot(2, PLAIN_GPA, 2 * PAGE_SIZE)
    wl.set_attributes(PLAIN_GPA, 2, private=True)
    wl.run_guest([PLAIN_GPA // PAGE_SIZE, PLAIN_GPA // PAGE_SIZE + 1])
    wl.facts["exits_resumed"] = ctypes.string_at(plain, 2) == guest.marker(
        PLAIN_GPA // PAGE_SIZE
    ).to_bytes(2, "little")


def fallocate_only(wl: Workload, p: Params) -> None:
    """guest_memfd as every kernel with it has it (no mmap, no memslot): create, allocate
    with fallocate, punch holes, close."""
    pages = p.pages or 32
    gmem = wl.guest_memfd(pages, 0)
    for _ in range(p.rounds or 2):
        wl.fallocate(gmem, 0, pages)
        wl.punch(gmem, pages // 4, pages // 2)


def in_place(wl: Workload, p: Params) -> None:
    """Shareability kept in the guest_memfd, converted on it, page by page (the in-place
    conversion series, on a software-protected VM): host faults served and refused around
    converted ranges, a conversion refused while a page is in use (EAGAIN, and the page),
    one that changes nothing, a punch, and the guest faulting private pages of the inode."""
    pages = max(p.pages or 32, 32)
    private = wl.guest_memfd(pages, MMAP)  # every page private from the start
    if not wl.takes_attributes2(private):
        raise GmemtraceError(NOT_IN_PLACE, 2)
    wl.in_place = True
    shared = wl.guest_memfd(pages, MMAP | INIT_SHARED)
    host_private, host_shared = wl.map(private), wl.map(shared)
    wl.host_touch(host_shared, 0, pages // 2)  # served
    for refused in (0, 1):
        wl.touch_in_child(host_private, refused)  # refused: private
    # A range goes shared: faults there are served, its neighbours still refused.
    wl.convert_in_place(private, 8, 8, to_private=False)
    wl.host_touch(host_private, 8, 8)
    for refused in (7, 16):
        wl.touch_in_child(host_private, refused)
    # A range of the other goes private: its mappings go, touching it is refused...
    wl.convert_in_place(shared, 4, 4, to_private=True)
    wl.touch_in_child(host_shared, 5)
    # ...and back: served again. Asking for what already is changes nothing.
    wl.convert_in_place(shared, 4, 4, to_private=False)
    wl.host_touch(host_shared, 4, 4)
    wl.convert_in_place(shared, 0, 4, to_private=False)
    # A page in use (here a pipe holds it) blocks its range's conversion to private.
    held = wl.hold(host_shared, 10)
    try:
        err, blocking = wl.convert_in_place(shared, 8, 8, to_private=True)
    finally:
        held.release()
    wl.facts["blocked"] = {"errno": errno.errorcode.get(err, str(err)), "page": blocking}
    wl.convert_in_place(shared, 8, 8, to_private=True)  # nothing holds it now
    wl.punch(private, 8, 4)  # half the shared range goes back to the kernel
    # The guest faults private pages of the same inode (kvm_gmem_get_pfn).
    base = COCO_GPA // PAGE_SIZE
    wl.bind_private(1, COCO_GPA, private)
    wl.run_guest([base + i for i in range(20, 28)])


NOT_IN_PLACE = (
    "this kernel keeps no shareability in the guest_memfd (KVM_SET_MEMORY_ATTRIBUTES2 on it "
    "answers ENOTTY): the in-place scenario needs the conversion series with "
    "kvm.gmem_in_place_conversion=1 (lab/run --kernel inplace-7.2)"
)


def require_in_place() -> None:
    """Exit 2, saying why, where guest_memfds keep no shareability (asked by behaviour of
    a default VM's guest_memfd: for a kernel that cannot make the scenario's VM)."""
    vm = Vm.create()
    try:
        gmem = vm.create_guest_memfd(PAGE_SIZE, 0)
        try:
            takes = kvm.takes_attributes2(gmem.fd)
        finally:
            gmem.close()
    finally:
        vm.close()
    if not takes:
        raise GmemtraceError(NOT_IN_PLACE, 2)


COCO_GPA = 0x10000  # the guest_memfd memslot: real mode reaches below 1 MiB
PLAIN_GPA = 0x80000  # a memslot of plain memory

# Scenarios that need a VM type other than the default.
VM_TYPES = {"coco": KVM_X86_SW_PROTECTED_VM, "inplace": KVM_X86_SW_PROTECTED_VM}
# What a scenario needs of the kernel besides its VM type: asked where the type is
# missing, so that the more telling reason is the one given.
CHECKS: dict[str, Callable[[], None]] = {"inplace": require_in_place}

SCENARIOS: dict[str, Callable[[Workload, Params], None]] = {
    "mixed": mixed,
    "fault-storm": fault_storm,
    "private-touch": private_touch,
    "conversions": conversions,
    "guest": guest_driven,
    "coco": coco,
    "fallocate": fallocate_only,
    "inplace": in_place,
}

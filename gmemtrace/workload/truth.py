"""Ground truth: what the workload did to each guest_memfd, and so what the kernel did.

The ledger follows the kernel's state per page (in the page cache, mapped by
each host mapping, mapped by the guest) so that every operation turns into the
exact faults, allocations and frees a tracer should observe.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field
from typing import Any

from gmemtrace.events import Counter, Counts, Interface, new_counts
from gmemtrace.kernel.uapi import GUEST_MEMFD_FLAG_INIT_SHARED, decode_gmem_flags
from gmemtrace.model.intervals import IntervalMap

SHARED = "shared"
PRIVATE = "private"


def _ranges(pages: set[int]) -> list[list[int]]:
    """Sorted page set -> [[first, count], ...]."""
    out: list[list[int]] = []
    for page in sorted(pages):
        if out and out[-1][0] + out[-1][1] == page:
            out[-1][1] += 1
        else:
            out.append([page, 1])
    return out


@dataclass
class InodeTruth:
    """The ledger of one guest_memfd inode."""

    ino: int
    flags: int
    size_pages: int
    state: IntervalMap[str] = field(default_factory=lambda: IntervalMap(0, PRIVATE))
    resident: set[int] = field(default_factory=set)  # pages in the page cache
    host_mapped: dict[int, set[int]] = field(default_factory=dict)  # mapping id -> pages
    guest_mapped: set[int] = field(default_factory=set)
    memslots: list[dict[str, int]] = field(default_factory=list)
    counts: Counts = field(default_factory=new_counts)
    ops: list[dict[str, Any]] = field(default_factory=list)
    resident_before_release: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        init = SHARED if self.flags & GUEST_MEMFD_FLAG_INIT_SHARED else PRIVATE
        self.state = IntervalMap(self.size_pages, init)  # shareability, as page ranges

    @property
    def init(self) -> str:
        return SHARED if self.flags & GUEST_MEMFD_FLAG_INIT_SHARED else PRIVATE

    def log(self, op: str, first: int, count: int, pid: int, **extra: Any) -> None:
        self.ops.append(
            {"t_ns": time.monotonic_ns(), "op": op, "first": first, "count": count, "pid": pid}
            | extra
        )

    def _allocate(self, pages: set[int]) -> int:
        new = pages - self.resident
        self.resident |= new
        self.counts[Counter.PAGES_ALLOCATED] += len(new)
        return len(new)

    def host_touch(self, mapping: int, pages: list[int], pid: int, op: str = "host_touch") -> None:
        """A host access to `pages` through `mapping`: a fault for each page not mapped there."""
        mapped = self.host_mapped.setdefault(mapping, set())
        wanted = set(pages)
        faulted = wanted - mapped
        mapped |= faulted
        self.counts[Counter.HOST_FAULTS] += len(faulted)
        allocated = self._allocate(faulted)
        first = min(pages)
        self.log(op, first, max(pages) - first + 1, pid, faults=len(faulted), allocated=allocated)

    def host_refused(self, page: int, pid: int) -> None:
        """A host access refused with SIGBUS: a private page, or a page past the end of the
        file (through a mapping longer than it)."""
        beyond = page >= self.size_pages
        refusal = Counter.HOST_FAULTS_BEYOND_EOF if beyond else Counter.HOST_FAULTS_REFUSED
        self.counts[refusal] += 1
        op = "host_fault_beyond_eof" if beyond else "host_fault_refused"
        self.log(op, page, 1, pid, signal="SIGBUS")

    def guest_touch(
        self, pages: list[int], pid: int, mapping: int = 0, mapped_by_kvm: set[int] | None = None
    ) -> None:
        """The guest accessed `pages`; KVM may have mapped `mapped_by_kvm` in host `mapping`."""
        wanted = set(pages)
        faulted = wanted - self.guest_mapped
        self.guest_mapped |= faulted
        self.counts[Counter.GUEST_FAULTS] += len(faulted)
        allocated = self._allocate(faulted)
        host_mapped = mapped_by_kvm or set()
        self.host_mapped.setdefault(mapping, set()).update(host_mapped)
        first = min(pages)
        self.log(
            "guest_touch",
            first,
            max(pages) - first + 1,
            pid,
            faults=len(faulted),
            allocated=allocated,
            host_mapped_by_kvm=len(host_mapped),
        )

    def guest_unmap(self, first: int, count: int) -> None:
        """KVM dropped the guest's mappings of these pages (a conversion): the next guest
        access faults again, allocating only if the page left the page cache."""
        self.guest_mapped.difference_update(range(first, first + count))

    def zap(self, mapping: int, first: int, count: int, pid: int) -> None:
        """MADV_DONTNEED on a host mapping: its PTEs go, the pages stay."""
        self.host_mapped.get(mapping, set()).difference_update(range(first, first + count))
        self.log("madv_dontneed", first, count, pid)

    def fallocate(self, first: int, count: int, pid: int) -> None:
        allocated = self._allocate(set(range(first, first + count)))
        self.log("fallocate", first, count, pid, allocated=allocated)

    def punch(self, first: int, count: int, pid: int) -> None:
        pages = set(range(first, first + count))
        freed = pages & self.resident
        self.resident -= freed
        for mapped in self.host_mapped.values():
            mapped -= pages
        self.guest_mapped -= pages
        self.counts[Counter.PAGES_FREED] += len(freed)
        self.counts[Counter.HOLE_PUNCHES] += 1
        self.log("punch", first, count, pid, freed=len(freed))

    def convert(
        self,
        first: int,
        count: int,
        to_private: bool,
        interface: Interface,
        err: int,
        pid: int,
        blocking_page: int | None = None,
    ) -> None:
        self.counts[Counter.CONVERSION_ATTEMPTS] += 1
        target = PRIVATE if to_private else SHARED
        changes = any(
            state != target for a, b, state in self.state.runs() if a < first + count and b > first
        )
        if to_private and err == errno.EAGAIN and interface is Interface.ATTRIBUTES2:
            # In place, the host's mappings go before the kernel finds a page in use.
            for mapped in self.host_mapped.values():
                mapped.difference_update(range(first, first + count))
        if err == 0 and interface is Interface.ATTRIBUTES2 and changes:
            self.guest_unmap(first, count)  # KVM invalidates the guest's mappings too
        if err == 0:
            target = PRIVATE if to_private else SHARED
            self.state.assign(first, first + count, target)
            self.counts[
                Counter.CONVERSIONS_TO_PRIVATE if to_private else Counter.CONVERSIONS_TO_SHARED
            ] += 1
            if to_private:  # the host loses its mappings of pages turned private
                for mapped in self.host_mapped.values():
                    mapped.difference_update(range(first, first + count))
        self.log(
            "convert",
            first,
            count,
            pid,
            to=PRIVATE if to_private else SHARED,
            interface=interface,
            errno=err,
            **({"blocking_page": blocking_page} if blocking_page is not None else {}),
            **({"noop": True} if err == 0 and not changes else {}),
        )

    def release(self, pid: int) -> None:
        """Last reference gone: the page cache is emptied."""
        self.resident_before_release = set(self.resident)
        self.counts[Counter.PAGES_FREED] += len(self.resident)
        self.log("release", 0, self.size_pages, pid, freed=len(self.resident))
        self.resident.clear()

    def shareability(self) -> list[dict[str, Any]]:
        return [
            {"first": first, "count": end - first, "state": state}
            for first, end, state in self.state.runs()
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "ino": self.ino,
            "flags": self.flags,
            "flag_names": decode_gmem_flags(self.flags),
            "size_pages": self.size_pages,
            "init": self.init,
            "memslots": self.memslots,
            "counts": dict(self.counts),
            "shareability": self.shareability(),
            "resident_before_release": _ranges(self.resident_before_release),
            "ops": self.ops,
        }

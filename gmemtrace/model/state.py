"""The model: per-inode shareability, residency and fault recency maps, counters, logs.

It consumes event batches, whichever tier or file produced them. Hot kinds
(faults, page events, or their counts and page states where the kernel kept
them in maps) are counted with numpy and applied as runs of consecutive pages;
only the rare kinds are walked one by one.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gmemtrace.events import (
    CONV_BLOCKED,
    CONV_TO_PRIVATE,
    DISCOVERED,
    GUEST_FAULT_BY_GPA,
    GUEST_FAULT_TIMED,
    Counter,
    Counts,
    Interface,
    Kind,
    PageState,
    access_name,
    column,
    new_counts,
)
from gmemtrace.kernel.uapi import (
    GUEST_MEMFD_FLAG_INIT_SHARED,
    GUEST_MEMFD_FLAG_MMAP,
    KVM_MEMORY_EXIT_FLAG_PRIVATE,
    PAGE_SIZE,
)
from gmemtrace.model.intervals import IntervalMap


class Share(enum.StrEnum):
    SHARED = "shared"
    PRIVATE = "private"
    UNKNOWN = "unknown"


class Provenance(enum.StrEnum):
    """Where a page's shareability comes from."""

    FLAGS = "creation flags"
    CONVERSION = "conversion"
    FAULT = "fault"
    REFUSED = "refused fault"
    NOTHING = "unknown"


class Loss(enum.StrEnum):
    """Why the kernel could not hand an event over (bpf/gmem_common.h: LOST_*)."""

    RING_FULL = "ring_full"  # no room: the consumer was behind
    REFUSED_WITH_ROOM = "refused_with_room"  # the ring's lock gave up while it had room


class Refused(enum.StrEnum):
    """Why a host fault was answered with SIGBUS."""

    PRIVATE = "private"  # the page is private
    BEYOND_EOF = "beyond_eof"  # past the end of the file (a mapping longer than it)


# Event kind -> counter for the kinds counted in bulk, and whether the event's
# page count (not 1) is what counts. Refused faults are counted one by one (a
# refused fault is also a host fault event, taken then refused: host_faults
# counts the successful ones).
_BULK: dict[int, tuple[Counter, bool]] = {
    Kind.HOST_FAULT: (Counter.HOST_FAULTS, True),
    Kind.GUEST_FAULT: (Counter.GUEST_FAULTS, True),
    Kind.ALLOC: (Counter.PAGES_ALLOCATED, True),
    Kind.FREE: (Counter.PAGES_FREED, True),
}
# Hot kinds, whose record may stand for several events (a large folio, or counts the
# kernel kept: COUNTED).
_PAGE_WEIGHTED = (*(kind for kind, (_, weighted) in _BULK.items() if weighted), Kind.COUNTED)
# The collector's own records: no process did them.
_COLLECTOR_OWN = (Kind.LOST, Kind.END, Kind.PAGE_STATE)
# A page state read from the kernel, as the hot kind that would have made it.
_STATE_AS = {
    PageState.FAULTED: Kind.HOST_FAULT,
    PageState.RESIDENT: Kind.ALLOC,
    PageState.GONE: Kind.FREE,
}
# Kinds whose latency (ns) the event carries, in which field, and the flag that says
# it does (0: always).
_LATENCY_FIELD = {
    kind: (column(kind, "latency_ns"), flag)
    for kind, flag in (
        (Kind.CONVERT, 0),
        (Kind.PUNCH, 0),
        (Kind.FALLOCATE, 0),
        (Kind.GUEST_FAULT, GUEST_FAULT_TIMED),
    )
}
GFN_SPACE = 1 << 52  # guest frame numbers: 64-bit guest physical addresses, 4 KiB pages


# Events about a process, not about guest_memfd: a process seen only in these did not
# touch one (with no pid filter, every fork and exec on the machine is one).
_PROCESS_ONLY = (Kind.FORK, Kind.EXEC)


@dataclass(frozen=True)
class Cause:
    """Why pages are in the state they are: the event that put them there. A creation
    (its flags; its size, for a page past the end), the kernel's setup of a new inode's
    pages, or a conversion (its request, as the kernel answered it)."""

    what: Provenance  # FLAGS (creation or setup) or CONVERSION
    ts_ns: int
    pid: int | None
    tid: int | None
    flags: int | None = None  # the creation's guest_memfd flags
    conversion: Conversion | None = None


@dataclass(frozen=True)
class InodeSummary:
    """One guest_memfd as reports and views show it (page counts as of now)."""

    ino: int
    size_pages: int
    flags: int | None  # None: not seen at creation
    init: Share
    shared_pages: int
    private_pages: int
    unknown_pages: int


@dataclass
class InodeState:
    ino: int
    size_pages: int
    flags: int | None  # None: not seen at creation
    init: Share
    shareability: IntervalMap[tuple[Share, Provenance]]
    resident: IntervalMap[bool]
    last_fault_ns: IntervalMap[int]  # when the host last faulted each page (0: never)
    # What put each page in its shareability (None: nothing seen did; a fault's inference)
    causes: IntervalMap[Cause | None]
    counts: Counts = field(default_factory=new_counts)
    first_seen_ns: int = 0
    size_known: bool = True  # False: first seen in a page or fault event, grown as they come
    pid: int | None = None  # the process that created it (or held it when tracing began)
    released_ns: int | None = None  # its last close (the function tier sees it)
    created: Cause | None = None  # its creation, where seen

    @classmethod
    def create(
        cls,
        ino: int,
        size_pages: int,
        flags: int | None,
        ts: int,
        pid: int | None = None,
        tid: int | None = None,
    ) -> InodeState:
        if flags is None:
            init = Share.UNKNOWN
        else:
            init = Share.SHARED if flags & GUEST_MEMFD_FLAG_INIT_SHARED else Share.PRIVATE
        provenance = Provenance.NOTHING if init is Share.UNKNOWN else Provenance.FLAGS
        created = None if flags is None else Cause(Provenance.FLAGS, ts, pid, tid, flags)
        return cls(
            ino,
            size_pages,
            flags,
            init,
            IntervalMap(size_pages, (init, provenance)),
            IntervalMap(size_pages, False),
            IntervalMap(size_pages, 0),
            IntervalMap(size_pages, created),
            first_seen_ns=ts,
            pid=pid,
            created=created,
        )

    def pages(self, state: Share) -> int:
        return sum(end - first for first, end, (s, _) in self.shareability.runs() if s is state)

    def summary(self) -> InodeSummary:
        """What reports and interval records say of the inode besides its counters."""
        return InodeSummary(
            ino=self.ino,
            size_pages=self.size_pages,
            flags=self.flags,
            init=self.init,
            shared_pages=self.pages(Share.SHARED),
            private_pages=self.pages(Share.PRIVATE),
            unknown_pages=self.pages(Share.UNKNOWN),
        )

    def grow(self, size_pages: int) -> None:
        """Pages beyond the size seen so far, of an inode first seen in page or fault events
        (an inode whose size is known never grows: a page past it is past the end)."""
        if size_pages > self.size_pages and not self.size_known:
            self.size_pages = size_pages
            self.shareability.resize(size_pages, (Share.UNKNOWN, Provenance.NOTHING))
            self.resident.resize(size_pages, False)
            self.last_fault_ns.resize(size_pages, 0)
            self.causes.resize(size_pages, None)

    def infer(
        self, first: int, end: int, state: Share, provenance: Provenance, cause: Cause | None = None
    ) -> None:
        """What pages nothing else described must be: a fault's outcome, or the kernel's
        setup of a new inode (`cause`)."""
        self.grow(end)
        for lo, hi, (known, _) in self.shareability.runs_in(first, end):
            if known is Share.UNKNOWN:
                self.shareability.assign(lo, hi, (state, provenance))
                self.causes.assign(lo, hi, cause)


@dataclass(frozen=True)
class Conversion:
    """A conversion request as the kernel answered it (result: 0 or -errno)."""

    ts_ns: int
    pid: int
    tid: int
    ino: int | None  # None: a gpa no memslot binding seen maps to a guest_memfd
    first: int
    count: int
    to: Share
    interface: Interface
    result: int
    latency_ns: int
    # Refused with EAGAIN (or ENOMEM): the page that blocked it (error_offset), if told.
    blocking_page: int | None = None
    # Done, but every page already had that state (as far as the model knew): the kernel
    # returns early, changing nothing.
    noop: bool = False


@dataclass(frozen=True)
class Refusal:
    """A host fault answered with SIGBUS: on a private page, or past the end of the file."""

    ts_ns: int
    pid: int
    tid: int
    ino: int
    page: int
    address: int
    reason: Refused
    access: str = ""  # "read", "write", or "" where the probe did not tell
    state: Share = Share.UNKNOWN  # the page's shareability at that instant, as known then
    cause: Cause | None = None  # what put it there (past the end: the creation, its size)


@dataclass(frozen=True)
class MemoryFaultExit:
    """KVM_EXIT_MEMORY_FAULT: the guest wanted [gpa, gpa + size) the other way."""

    ts_ns: int
    pid: int
    tid: int
    gpa: int
    size: int  # bytes (0: unknown)
    private: bool  # the guest wanted it private
    ino: int | None  # the guest_memfd page the gpa maps to, if a binding says
    page: int | None
    state: Share = Share.UNKNOWN  # that page's shareability at that instant, as known then
    cause: Cause | None = None  # what put it there
    # The VMM's answer: its next conversion of that page (or frame), whichever way
    answer: Conversion | None = None


@dataclass(frozen=True)
class Binding:
    """A memslot bound to guest_memfd pages, in the VM of process `pid`."""

    pid: int
    slot: int
    base_gfn: int
    npages: int
    ino: int
    first: int


@dataclass
class Model:
    """Everything the view, the report and the notebooks read."""

    inodes: dict[int, InodeState] = field(default_factory=dict)
    # Inodes whose number a later guest_memfd reused (after the first was released).
    retired: list[InodeState] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)
    # Per process (one VM each): the guest frames KVM_SET_MEMORY_ATTRIBUTES made private.
    vm_private: dict[int, IntervalMap[bool]] = field(default_factory=dict)
    # ... and which conversion set each frame's attribute
    vm_causes: dict[int, IntervalMap[Cause | None]] = field(default_factory=dict)
    conversions: list[Conversion] = field(default_factory=list)
    memory_fault_exits: list[MemoryFaultExit] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    per_pid: dict[int, Counts] = field(default_factory=dict)
    per_thread: dict[tuple[int, int], Counts] = field(default_factory=dict)
    comms: dict[int, str] = field(default_factory=dict)
    # Processes that touched a guest_memfd (created, mapped, faulted, converted, ran a vCPU
    # on one), and every process an event came from (forks and execs of traced processes).
    pids: set[int] = field(default_factory=set)
    seen_pids: set[int] = field(default_factory=set)
    latency: dict[str, dict[int, int]] = field(default_factory=dict)  # event -> log2(ns) -> n
    lost_events: int = 0
    lost_refused: int = 0  # of those, refused while the ring buffer had room
    # (from ns, to ns, events lost): the windows whose counts are low
    lost_windows: list[tuple[int, int, int]] = field(default_factory=list)
    events_applied: int = 0  # faults and page events count their pages (COUNTED: its count)
    first_ns: int | None = None
    last_ns: int | None = None
    stopped_ns: int | None = None  # when the capture stopped cleanly (its END record)
    # memory_fault_exits not yet answered by a conversion that succeeded (their indices)
    _unanswered: list[int] = field(default_factory=list, repr=False)

    def lost_by_reason(self) -> dict[Loss, int]:
        """Events lost so far, by why."""
        return {
            Loss.RING_FULL: self.lost_events - self.lost_refused,
            Loss.REFUSED_WITH_ROOM: self.lost_refused,
        }

    def inode(self, ino: int, ts: int) -> InodeState:
        """The inode's state; one first seen in a page or fault event starts unknown."""
        state = self.inodes.get(ino)
        if state is None:
            state = self.inodes[ino] = InodeState.create(ino, 0, None, ts)
            state.size_known = False
        return state

    def locate_gfn(self, pid: int, gfn: int) -> tuple[int, int] | None:
        """(inode, page) of a guest frame of process `pid`'s VM, through the memslot
        bindings seen so far (a VMM with several VMs would need their fds: one VM a process)."""
        for b in reversed(self.bindings):
            if b.pid == pid and b.base_gfn <= gfn < b.base_gfn + b.npages:
                return b.ino, b.first + gfn - b.base_gfn
        return None

    def slots_of(self, ino: int) -> list[int]:
        return sorted({b.slot for b in self.bindings if b.ino == ino})

    # --- forgetting (a long-running exporter keeps only what it still serves) --
    def forget_inode(self, state: InodeState) -> None:
        """Drop a released guest_memfd and the memslot bindings into it."""
        if self.inodes.get(state.ino) is state:
            del self.inodes[state.ino]
        self.retired = [s for s in self.retired if s is not state]
        if state.ino not in self.inodes:
            self.bindings = [b for b in self.bindings if b.ino != state.ino]

    def forget_process(self, pid: int) -> None:
        """Drop what is kept per process of one that has exited."""
        self.per_pid.pop(pid, None)
        self.vm_private.pop(pid, None)
        self.vm_causes.pop(pid, None)
        self.comms.pop(pid, None)
        self.pids.discard(pid)
        self.seen_pids.discard(pid)
        self.bindings = [b for b in self.bindings if b.pid != pid]
        for key in [k for k in self.per_thread if k[0] == pid]:
            del self.per_thread[key]

    def forget_bystanders(self, alive: Callable[[int], bool]) -> None:
        """Drop the processes that only forked or exec'd (no guest_memfd) and are gone: with
        no pid filter, every process of the machine passes through, and an agent that runs
        for weeks must not keep them."""
        for pid in self.seen_pids - self.pids:
            if not alive(pid):
                self.seen_pids.discard(pid)
                self.comms.pop(pid, None)

    def take_logs(self) -> tuple[list[Conversion], list[MemoryFaultExit]]:
        """The conversions and memory fault exits since the last call, and the logs emptied
        (with the refusals and loss windows): what an exporter counts, it need not keep."""
        taken = (self.conversions, self.memory_fault_exits)
        self.conversions, self.memory_fault_exits = [], []
        self._unanswered = []
        self.refused.clear()
        self.lost_windows.clear()
        return taken

    # --- applying a batch ---------------------------------------------------
    def apply(self, events: np.ndarray) -> None:
        """Apply a batch. A creation may reuse an inode number: the events before it
        belong to the old inode, so the batch is applied in pieces that start there."""
        creates = np.flatnonzero(events["kind"] == Kind.CREATE).tolist()
        bounds = [0, *(c for c in creates if c > 0), events.size]
        for a, b in itertools.pairwise(bounds):
            self._apply_piece(events[a:b])

    def _apply_piece(self, events: np.ndarray) -> None:
        if events.size == 0:
            return
        kinds = events["kind"]
        traced = ~np.isin(kinds, _COLLECTOR_OWN)
        if traced.any():
            times = events["ts_ns"][traced]
            self.first_ns = int(times.min()) if self.first_ns is None else self.first_ns
            self.last_ns = max(self.last_ns or 0, int(times.max()))
            self.seen_pids.update(np.unique(events["pid"][traced]).tolist())
            touched = traced & ~np.isin(kinds, _PROCESS_ONLY)
            self.pids.update(np.unique(events["pid"][touched]).tolist())
        # Guest faults by guest physical address are found one by one, in order with the
        # bindings and conversions that say which guest_memfd page each one is.
        by_gpa = (kinds == Kind.GUEST_FAULT) & ((events["flags"] & GUEST_FAULT_BY_GPA) != 0)
        hot = np.isin(kinds, _PAGE_WEIGHTED) & ~by_gpa
        states = kinds == Kind.PAGE_STATE
        pages = events["count"][hot]
        self.events_applied += int((~states).sum()) + int(pages.sum()) - int(pages.size)
        rare = events[~hot & ~states]
        for ev in rare:
            self._apply_rare(ev)
        paged = events
        if states.any():  # page states act on the maps as the hot kinds that make them
            paged = events.copy()
            paged["kind"][states] = [_STATE_AS[PageState(f)] for f in events["flags"][states]]
            paged["flags"][states] = 0
        paged_kinds = paged["kind"]
        self._apply_faults(paged, paged_kinds == Kind.HOST_FAULT)
        self._apply_pages(paged, (paged_kinds == Kind.ALLOC) | (paged_kinds == Kind.FREE))
        # What is counted: the counts the kernel kept, as the kinds they count (copies
        # only where a batch has them: a recording's batches are whole records).
        counts_kept = kinds == Kind.COUNTED
        counted = kinds
        if counts_kept.any():
            counted = np.where(counts_kept, events[column(Kind.COUNTED, "counted_kind")], kinds)
        drop = by_gpa | states
        if drop.any():
            self._count(events[~drop], counted[~drop])
        else:
            self._count(events, counted)
        self._name(rare)  # hot events carry no comm (bpf/gmem_common.h)
        self._latencies(events)

    def _count(self, events: np.ndarray, kinds: np.ndarray) -> None:
        """Bulk counters per inode, per process and per thread (on columns: masking
        whole 80-byte records per kind was most of the model's time)."""
        ino, pid, tid = events["ino"], events["pid"], events["tid"]
        for kind, (counter, weighted) in _BULK.items():
            mask = kinds == kind
            if not mask.any():
                continue
            weights = events["count"][mask] if weighted else None
            first_ts = int(events["ts_ns"][int(np.argmax(mask))])
            for inode, n in _sum_by(ino[mask], weights):
                self.inode(inode, first_ts).counts[counter] += n
            pids = pid[mask]
            for p, n in _sum_by(pids, weights):
                self.per_pid.setdefault(p, new_counts())[counter] += n
            thread_key = (pids.astype(np.uint64) << np.uint64(32)) | tid[mask]
            for key, n in _sum_by(thread_key, weights):
                counts = self.per_thread.setdefault((key >> 32, key & 0xFFFFFFFF), new_counts())
                counts[counter] += n

    def _name(self, events: np.ndarray) -> None:
        named = events[events["comm"] != b""]
        for pid in np.unique(named["pid"]).tolist():
            if pid not in self.comms:
                comm = named["comm"][named["pid"] == pid][0]
                self.comms[pid] = comm.decode(errors="replace")

    def _latencies(self, events: np.ndarray) -> None:
        for kind, (field_name, flag) in _LATENCY_FIELD.items():
            chosen = events["kind"] == kind
            if flag:
                chosen &= (events["flags"] & flag) != 0
            values = events[field_name][chosen]
            if values.size == 0:
                continue
            slots = np.floor(np.log2(np.maximum(values, 1).astype(np.float64))).astype(np.int64)
            hist = self.latency.setdefault(Kind(kind).label, {})
            for slot, n in zip(*np.unique(slots, return_counts=True), strict=True):
                hist[int(slot)] = hist.get(int(slot), 0) + int(n)

    def _apply_faults(self, events: np.ndarray, faults: np.ndarray) -> None:
        """When each page was last faulted, and, where nothing else said what the pages
        are, that they are shared (the host could map them)."""
        for ino, first, end, last_ns in _runs(events, faults):
            state = self.inode(ino, last_ns)
            state.grow(end)
            end = min(end, state.size_pages)  # past the end: refused, and no page of it
            if first >= end:
                continue
            state.last_fault_ns.assign(first, end, last_ns)
            if state.init is Share.UNKNOWN:
                state.infer(first, end, Share.SHARED, Provenance.FAULT)

    def _apply_pages(self, events: np.ndarray, pages: np.ndarray) -> None:
        """Residency, from runs of consecutive allocations or frees, in order."""
        for ino, first, end, _ts, kind in _runs(events, pages, with_kind=True):
            state = self.inode(ino, _ts)
            if state.init is Share.UNKNOWN:
                state.grow(end)
            state.resident.assign(first, end, kind == Kind.ALLOC)

    def _apply_rare(self, ev: np.void) -> None:
        kind, ts, ino = int(ev["kind"]), int(ev["ts_ns"]), int(ev["ino"])
        if kind == Kind.CREATE and ev["result"] == 0:
            flags = None if ev["flags"] & DISCOVERED else int(ev[column(Kind.CREATE, "gmem_flags")])
            if ino in self.inodes and flags is not None:
                self.retired.append(self.inodes.pop(ino))  # the number was reused
            if ino not in self.inodes:
                self.inodes[ino] = InodeState.create(
                    ino, int(ev["count"]), flags, ts, int(ev["pid"]), int(ev["tid"])
                )
        elif kind == Kind.RELEASE and ino in self.inodes:
            self.inodes[ino].released_ns = ts
        elif kind == Kind.BIND and ev["result"] == 0:
            self.bindings.append(
                Binding(
                    pid=int(ev["pid"]),
                    slot=int(ev[column(Kind.BIND, "slot")]),
                    base_gfn=int(ev[column(Kind.BIND, "gpa")]) // PAGE_SIZE,
                    npages=int(ev["count"]),
                    ino=ino,
                    first=int(ev["first"]),
                )
            )
        elif kind == Kind.HOST_FAULT_REFUSED:
            page = int(ev["first"])
            state = self.inode(ino, ts)
            state.grow(page + 1)
            beyond = page >= state.size_pages  # a mapping longer than the file
            reason = Refused.BEYOND_EOF if beyond else Refused.PRIVATE
            counter = Counter.HOST_FAULTS_BEYOND_EOF if beyond else Counter.HOST_FAULTS_REFUSED
            self._count_one(ev, state, counter)
            share, provenance = (Share.UNKNOWN, None) if beyond else state.shareability.get(page)
            cause = state.created if beyond else state.causes.get(page)
            if not beyond and provenance in (Provenance.NOTHING, Provenance.FAULT):
                # Stronger than an inference from the fault itself (taken, then refused).
                state.shareability.assign(page, page + 1, (Share.PRIVATE, Provenance.REFUSED))
            self.refused.append(
                Refusal(
                    ts_ns=ts,
                    pid=int(ev["pid"]),
                    tid=int(ev["tid"]),
                    ino=ino,
                    page=page,
                    address=int(ev[column(Kind.HOST_FAULT_REFUSED, "address")]),
                    reason=reason,
                    access=access_name(int(ev[column(Kind.HOST_FAULT_REFUSED, "access")])),
                    state=share,
                    cause=cause,
                )
            )
        elif kind == Kind.PUNCH and ev["result"] == 0:
            self.inode(ino, ts).counts[Counter.HOLE_PUNCHES] += 1
        elif kind == Kind.CONVERT:
            self._apply_conversion(ev)
        elif kind == Kind.SHAREABILITY_SETUP:
            self._apply_setup(ev)
        elif kind == Kind.GUEST_FAULT:  # by gpa (kvm:kvm_page_fault)
            self._apply_guest_fault_by_gpa(ev)
        elif kind == Kind.MEMORY_FAULT_EXIT:
            pid, gpa = int(ev["pid"]), int(ev[column(Kind.MEMORY_FAULT_EXIT, "gpa")])
            size = int(ev[column(Kind.MEMORY_FAULT_EXIT, "size")])
            located = self.locate_gfn(pid, gpa // PAGE_SIZE) if size else None
            exit_flags = int(ev[column(Kind.MEMORY_FAULT_EXIT, "exit_flags")])
            share, cause = Share.UNKNOWN, None
            if located and located[0] in self.inodes:
                at = self.inodes[located[0]]
                if located[1] < at.size_pages:
                    share, cause = at.shareability.get(located[1])[0], at.causes.get(located[1])
            elif size and pid in self.vm_private:  # not guest_memfd: the VM's attributes say
                gfn = gpa // PAGE_SIZE
                share = Share.PRIVATE if self.vm_private[pid].get(gfn) else Share.SHARED
                cause = self.vm_causes[pid].get(gfn) if pid in self.vm_causes else None
            self._unanswered.append(len(self.memory_fault_exits))
            self.memory_fault_exits.append(
                MemoryFaultExit(
                    ts_ns=ts,
                    pid=pid,
                    tid=int(ev["tid"]),
                    gpa=gpa,
                    size=size,
                    private=bool(exit_flags & KVM_MEMORY_EXIT_FLAG_PRIVATE),
                    ino=located[0] if located else None,
                    page=located[1] if located else None,
                    state=share,
                    cause=cause,
                )
            )
        elif kind == Kind.LOST:
            self.lost_refused = max(self.lost_refused, int(ev[column(Kind.LOST, "refused_total")]))
            total = int(ev["count"])
            if total > self.lost_events:
                since = int(ev[column(Kind.LOST, "since_ns")])
                self.lost_windows.append((since, ts, total - self.lost_events))
                self.lost_events = total
        elif kind == Kind.END:
            self.stopped_ns = ts

    def _answer_exits(self, conversion: Conversion) -> None:
        """Link the memory fault exits this conversion answers (the first that does; a
        refused one until a later one succeeds)."""
        waiting = []
        for i in self._unanswered:
            exit = self.memory_fault_exits[i]
            if _answers(conversion, exit):
                self.memory_fault_exits[i] = exit = replace(exit, answer=conversion)
            if exit.answer is None or exit.answer.result != 0:
                waiting.append(i)
        self._unanswered = waiting

    def _apply_guest_fault_by_gpa(self, ev: np.void) -> None:
        """A vCPU's fault on a guest frame: a guest_memfd fault where a memslot binds the
        frame to a guest_memfd and KVM takes it from there: the frame is private, or the
        guest_memfd is mappable (6.18: such memslots take every access from it)."""
        pid, gfn = int(ev["pid"]), int(ev["first"])
        located = self.locate_gfn(pid, gfn)
        if located is None:
            return  # memory outside guest_memfd
        ino, page = located
        state = self.inode(ino, int(ev["ts_ns"]))
        private = pid in self.vm_private and self.vm_private[pid].get(gfn)
        if not private and not (state.flags or 0) & GUEST_MEMFD_FLAG_MMAP:
            return  # a shared frame: KVM maps the memslot's host memory, not guest_memfd
        state.grow(page + 1)
        self._count_one(ev, state, Counter.GUEST_FAULTS)

    def _count_one(self, ev: np.void, state: InodeState, counter: Counter) -> None:
        """One event of a kind counted one by one, per inode, process and thread. A refused
        host fault was also a fault event (taken, then refused): it is not a host fault."""
        pid, tid = int(ev["pid"]), int(ev["tid"])
        for counts in (state.counts, self.per_pid.setdefault(pid, new_counts())):
            _add(counts, counter)
        _add(self.per_thread.setdefault((pid, tid), new_counts()), counter)

    def _apply_setup(self, ev: np.void) -> None:
        """The kernel set a new inode's pages private or shared (in the inode itself): what
        the creation flags say, now seen being done; it describes pages nothing else had."""
        ino, ts = int(ev["ino"]), int(ev["ts_ns"])
        first, end = int(ev["first"]), int(ev["first"]) + int(ev["count"])
        state = self.inode(ino, ts)
        share = Share.PRIVATE if ev[column(Kind.SHAREABILITY_SETUP, "private")] else Share.SHARED
        if state.init is Share.UNKNOWN:
            state.init = share
        flags = int(ev[column(Kind.SHAREABILITY_SETUP, "gmem_flags")])
        cause = Cause(Provenance.FLAGS, ts, int(ev["pid"]), int(ev["tid"]), flags)
        state.created = state.created or cause
        state.infer(first, end, share, Provenance.FLAGS, cause)

    def _apply_conversion(self, ev: np.void) -> None:
        flags, ts = int(ev["flags"]), int(ev["ts_ns"])
        vm_attr_set: tuple[int, int] | None = None  # the frames KVM_SET_MEMORY_ATTRIBUTES set
        to_private = bool(flags & CONV_TO_PRIVATE)
        interface = Interface.of(flags)
        ino, first = int(ev["ino"]), int(ev["first"])
        if interface is Interface.VM_ATTRIBUTES:  # by guest physical address
            if ev["result"] == 0:
                attributes = self.vm_private.setdefault(
                    int(ev["pid"]), IntervalMap(GFN_SPACE, False)
                )
                attributes.assign(first, first + int(ev["count"]), to_private)
                vm_attr_set = (first, first + int(ev["count"]))
            located = self.locate_gfn(int(ev["pid"]), first)
            ino, first = located if located else (0, first)
        target = Share.PRIVATE if to_private else Share.SHARED
        count = int(ev["count"])
        state = self.inodes.get(ino) if ino else None
        noop = (
            ev["result"] == 0
            and state is not None
            and _all_pages(state, first, first + count, target)
        )
        blocked = flags & CONV_BLOCKED and ev["result"] != 0
        conversion = Conversion(
            ts_ns=ts,
            pid=int(ev["pid"]),
            tid=int(ev["tid"]),
            ino=ino or None,
            first=first,
            count=count,
            to=target,
            interface=interface,
            result=int(ev["result"]),
            latency_ns=int(ev[column(Kind.CONVERT, "latency_ns")]),
            blocking_page=int(ev[column(Kind.CONVERT, "blocking_page")]) if blocked else None,
            noop=bool(noop),
        )
        self.conversions.append(conversion)
        self._answer_exits(conversion)
        cause = Cause(Provenance.CONVERSION, ts, conversion.pid, conversion.tid, None, conversion)
        if vm_attr_set is not None:
            causes = self.vm_causes.setdefault(conversion.pid, IntervalMap(GFN_SPACE, None))
            causes.assign(*vm_attr_set, cause)
        if not ino:
            return  # unattributed: a gpa outside every binding seen
        state = self.inode(ino, ts)
        state.counts[Counter.CONVERSION_ATTEMPTS] += 1
        if ev["result"] == 0:
            state.shareability.assign(
                first, first + int(ev["count"]), (target, Provenance.CONVERSION)
            )
            if not noop:
                state.causes.assign(first, first + count, cause)
            done = Counter.CONVERSIONS_TO_PRIVATE if to_private else Counter.CONVERSIONS_TO_SHARED
            state.counts[done] += 1


def _answers(conversion: Conversion, exit: MemoryFaultExit) -> bool:
    """Whether a conversion answers a memory fault exit of the same VMM: the same page (or
    frame), after the exit. Which way is the VMM's call: a confidential guest's private
    access is answered by converting to private; a private access where KVM cannot serve
    one (no guest_memfd behind the frame) by converting to shared."""
    if conversion.pid != exit.pid or conversion.ts_ns < exit.ts_ns:
        return False
    if exit.ino is None or exit.page is None:  # memory outside guest_memfd: by frame
        where, page = None, exit.gpa // PAGE_SIZE
    else:
        where, page = exit.ino, exit.page
    first, end = conversion.first, conversion.first + conversion.count
    return conversion.ino == where and first <= page < end


def _all_pages(state: InodeState, first: int, end: int, share: Share) -> bool:
    """Whether every page of [first, end) is known to be in `share` already."""
    runs = [(a, b, s) for a, b, (s, _) in state.shareability.runs() if a < end and b > first]
    covered = sum(min(b, end) - max(a, first) for a, b, _ in runs)
    return covered == end - first and all(s is share for _, _, s in runs)


def _add(counts: Counts, counter: Counter) -> None:
    counts[counter] += 1
    if counter.refusal:  # taken, then refused: not also a host fault
        counts[Counter.HOST_FAULTS] -= 1


def _sum_by(keys: np.ndarray, weights: np.ndarray | None) -> list[tuple[int, int]]:
    uniq, inverse = np.unique(keys, return_inverse=True)
    if weights is None:
        sums = np.bincount(inverse.ravel())
    else:
        sums = np.bincount(inverse.ravel(), weights=weights.astype(np.float64))
    return [(int(k), int(n)) for k, n in zip(uniq.tolist(), sums.tolist(), strict=True)]


def _runs(events: np.ndarray, chosen: np.ndarray, with_kind: bool = False) -> Iterator[Any]:
    """Runs of the `chosen` events on consecutive pages of one inode (and one kind), in
    order: (ino, first, end, last ts[, kind])."""
    if not chosen.any():
        return
    ino = events["ino"][chosen].astype(np.int64)
    first = events["first"][chosen].astype(np.int64)
    count = events["count"][chosen].astype(np.int64)
    kind = events["kind"][chosen].astype(np.int64)
    ts = events["ts_ns"][chosen]
    starts = np.ones(ino.size, dtype=bool)
    starts[1:] = (ino[1:] != ino[:-1]) | (first[1:] != first[:-1] + count[:-1])
    if with_kind:
        starts[1:] |= kind[1:] != kind[:-1]
    bounds = [*np.flatnonzero(starts).tolist(), ino.size]
    for a, b in itertools.pairwise(bounds):
        run = (int(ino[a]), int(first[a]), int(first[b - 1] + count[b - 1]), int(ts[b - 1]))
        yield (*run, int(kind[a])) if with_kind else run

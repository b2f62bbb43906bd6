"""The model: per-inode shareability and residency maps, counters, conversions and rates.

It consumes event batches, whichever tier or file produced them. Hot kinds
(faults, page events) are counted with numpy; only the rare kinds, and runs of
page events, are walked one by one.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gmemtrace.events import CONV_INTERFACES, CONV_TO_PRIVATE, Kind
from gmemtrace.kernel.kvm import GUEST_MEMFD_FLAG_INIT_SHARED, PAGE_SIZE
from gmemtrace.model.intervals import IntervalMap

DISCOVERED = 0x1  # CREATE/MMAP found in /proc at attach (probes/tracepoints.py)


class Share(enum.StrEnum):
    SHARED = "shared"
    PRIVATE = "private"
    UNKNOWN = "unknown"


# Where a page's shareability comes from.
FROM_FLAGS, FROM_CONVERSION, FROM_FAULT, FROM_REFUSED, FROM_NOTHING = (
    "creation flags",
    "conversion",
    "fault",
    "refused fault",
    "unknown",
)

COUNTERS = (
    "host_faults",
    "host_faults_refused",
    "guest_faults",
    "pages_allocated",
    "pages_freed",
    "hole_punches",
    "conversion_attempts",
    "conversions_to_shared",
    "conversions_to_private",
)

# Event kind -> counter, for the kinds counted in bulk. A refused fault is
# also a host fault event (the fault was taken, then refused): host_faults
# counts the successful ones.
_BULK = {
    Kind.HOST_FAULT: "host_faults",
    Kind.HOST_FAULT_REFUSED: "host_faults_refused",
    Kind.GUEST_FAULT: "guest_faults",
}


@dataclass
class InodeState:
    ino: int
    size_pages: int
    flags: int | None  # None: not seen at creation
    init: Share
    shareability: IntervalMap[tuple[Share, str]]
    resident: IntervalMap[bool]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    first_seen_ns: int = 0

    @classmethod
    def create(cls, ino: int, size_pages: int, flags: int | None, ts: int) -> InodeState:
        if flags is None:
            init = Share.UNKNOWN
        else:
            init = Share.SHARED if flags & GUEST_MEMFD_FLAG_INIT_SHARED else Share.PRIVATE
        provenance = FROM_NOTHING if init is Share.UNKNOWN else FROM_FLAGS
        return cls(
            ino,
            size_pages,
            flags,
            init,
            IntervalMap(size_pages, (init, provenance)),
            IntervalMap(size_pages, False),
            first_seen_ns=ts,
        )

    def pages(self, state: Share) -> int:
        return sum(end - first for first, end, (s, _) in self.shareability.runs() if s is state)

    def infer(self, page: int, state: Share, provenance: str) -> None:
        """A fault's outcome says what an unknown page must be."""
        if page >= self.size_pages:
            self.size_pages = page + 1
            self.shareability.resize(self.size_pages, (Share.UNKNOWN, FROM_NOTHING))
            self.resident.resize(self.size_pages, False)
        if self.shareability.get(page)[0] is Share.UNKNOWN:
            self.shareability.assign(page, page + 1, (state, provenance))


@dataclass(frozen=True)
class Binding:
    slot: int
    base_gfn: int
    npages: int
    ino: int
    first: int


@dataclass
class Model:
    """Everything the view, the report and the notebooks read."""

    inodes: dict[int, InodeState] = field(default_factory=dict)
    bindings: list[Binding] = field(default_factory=list)
    conversions: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    per_pid: dict[int, dict[str, int]] = field(default_factory=dict)
    comms: dict[int, str] = field(default_factory=dict)
    pids: set[int] = field(default_factory=set)  # every process seen doing guest_memfd work
    rates: dict[tuple[int, int, str], int] = field(default_factory=dict)  # (second, ino, counter)
    lost_events: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    ended: bool = False

    def inode(self, ino: int, ts: int) -> InodeState:
        """The inode's state; one first seen in a page or fault event starts unknown."""
        state = self.inodes.get(ino)
        if state is None:
            state = self.inodes[ino] = InodeState.create(ino, 0, None, ts)
        return state

    def locate_gfn(self, gfn: int) -> tuple[int, int] | None:
        """(inode, page) of a guest frame, through the memslot bindings seen so far."""
        for b in reversed(self.bindings):
            if b.base_gfn <= gfn < b.base_gfn + b.npages:
                return b.ino, b.first + gfn - b.base_gfn
        return None

    # --- applying a batch ---------------------------------------------------
    def apply(self, events: np.ndarray) -> None:
        if events.size == 0:
            return
        kinds = events["kind"]
        traced = (kinds != Kind.LOST) & (kinds != Kind.END)  # not the collector's own records
        if traced.any():
            times = events["ts_ns"][traced]
            self.first_ns = int(times.min()) if self.first_ns is None else self.first_ns
            self.last_ns = max(self.last_ns or 0, int(times.max()))
            self.pids.update(np.unique(events["pid"][traced]).tolist())
        rare = ~np.isin(kinds, (Kind.HOST_FAULT, Kind.GUEST_FAULT, Kind.ALLOC, Kind.FREE))
        for ev in events[rare]:
            self._apply_rare(ev)
        self._apply_faults(events[kinds == Kind.HOST_FAULT])
        self._apply_pages(events[np.isin(kinds, (Kind.ALLOC, Kind.FREE))])
        self._count(events)

    def _count(self, events: np.ndarray) -> None:
        """Bulk counters per inode, per pid and per second, from the hot kinds."""
        for kind, counter in (
            *_BULK.items(),
            (Kind.ALLOC, "pages_allocated"),
            (Kind.FREE, "pages_freed"),
        ):
            chosen = events[events["kind"] == kind]
            if chosen.size == 0:
                continue
            weight = chosen["count"] if kind in (Kind.ALLOC, Kind.FREE, Kind.GUEST_FAULT) else None
            sign = -1 if kind == Kind.HOST_FAULT_REFUSED else 1
            for ino, n in _sum_by(chosen["ino"], weight):
                state = self.inode(ino, int(chosen["ts_ns"][0]))
                state.counts[counter] += n
                if kind == Kind.HOST_FAULT_REFUSED:
                    state.counts["host_faults"] -= n
            for pid, n in _sum_by(chosen["pid"], weight):
                counts = self.per_pid.setdefault(pid, dict.fromkeys(COUNTERS, 0))
                counts[counter] += n
                if sign < 0:
                    counts["host_faults"] -= n
            seconds = (chosen["ts_ns"] // 1_000_000_000).astype(np.int64)
            keys = np.stack([seconds, chosen["ino"].astype(np.int64)], axis=1)
            values = chosen["count"] if weight is not None else np.ones(chosen.size, np.int64)
            uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
            sums = np.bincount(inverse.ravel(), weights=values.astype(np.float64))
            for (second, ino), n in zip(uniq.tolist(), sums.tolist(), strict=True):
                key = (second, ino, counter)
                self.rates[key] = self.rates.get(key, 0) + int(n)
        for pid, comm in zip(events["pid"].tolist(), events["comm"].tolist(), strict=True):
            if comm and pid not in self.comms:
                self.comms[pid] = comm.decode(errors="replace")

    def _apply_faults(self, faults: np.ndarray) -> None:
        """Successful host faults say their page is shared, where nothing else did."""
        for ino in np.unique(faults["ino"]).tolist():
            state = self.inode(ino, 0)
            if state.init is not Share.UNKNOWN:
                continue  # flags already say what every page starts as
            for page in np.unique(faults["first"][faults["ino"] == ino]).tolist():
                state.infer(page, Share.SHARED, FROM_FAULT)

    def _apply_pages(self, pages: np.ndarray) -> None:
        """Residency: runs of consecutive allocations or frees, applied in order."""
        if pages.size == 0:
            return
        kind, ino, first, count = (
            pages[f].astype(np.int64) for f in ("kind", "ino", "first", "count")
        )
        starts = np.ones(pages.size, dtype=bool)
        starts[1:] = (
            (kind[1:] != kind[:-1]) | (ino[1:] != ino[:-1]) | (first[1:] != first[:-1] + count[:-1])
        )
        bounds = [*np.flatnonzero(starts).tolist(), pages.size]
        for a, b in itertools.pairwise(bounds):
            state = self.inode(int(ino[a]), int(pages["ts_ns"][a]))
            lo, hi = int(first[a]), int(first[b - 1] + count[b - 1])
            if hi > state.size_pages and state.init is Share.UNKNOWN:
                state.size_pages = hi
                state.shareability.resize(hi, (Share.UNKNOWN, FROM_NOTHING))
                state.resident.resize(hi, False)
            state.resident.assign(lo, hi, bool(kind[a] == Kind.ALLOC))

    def _apply_rare(self, ev: np.void) -> None:
        kind, ts, ino = int(ev["kind"]), int(ev["ts_ns"]), int(ev["ino"])
        if kind == Kind.CREATE and ev["result"] == 0:
            flags = None if ev["flags"] & DISCOVERED else int(ev["arg"])
            existing = self.inodes.get(ino)
            if existing is None or flags is not None:
                self.inodes[ino] = InodeState.create(ino, int(ev["count"]), flags, ts)
        elif kind == Kind.BIND and ev["result"] == 0:
            self.bindings.append(
                Binding(
                    int(ev["arg2"]),
                    int(ev["arg"]) // PAGE_SIZE,
                    int(ev["count"]),
                    ino,
                    int(ev["first"]),
                )
            )
        elif kind == Kind.HOST_FAULT_REFUSED:
            self.inode(ino, ts).infer(int(ev["first"]), Share.PRIVATE, FROM_REFUSED)
            self.refused.append(
                {
                    "ts_ns": ts,
                    "pid": int(ev["pid"]),
                    "tid": int(ev["tid"]),
                    "ino": ino,
                    "page": int(ev["first"]),
                    "address": int(ev["arg"]),
                }
            )
        elif kind == Kind.PUNCH and ev["result"] == 0:
            self.inode(ino, ts).counts["hole_punches"] += 1
        elif kind == Kind.CONVERT:
            self._apply_conversion(ev)
        elif kind == Kind.LOST:
            self.lost_events = max(self.lost_events, int(ev["count"]))
        elif kind == Kind.END:
            self.ended = True

    def _apply_conversion(self, ev: np.void) -> None:
        flags, ts = int(ev["flags"]), int(ev["ts_ns"])
        to_private = bool(flags & CONV_TO_PRIVATE)
        interface = next((n for bit, n in CONV_INTERFACES.items() if flags & bit), "unknown")
        ino, first = int(ev["ino"]), int(ev["first"])
        if interface == "KVM_SET_MEMORY_ATTRIBUTES":  # by guest physical address
            located = self.locate_gfn(first)
            ino, first = located if located else (0, first)
        entry = {
            "ts_ns": ts,
            "pid": int(ev["pid"]),
            "tid": int(ev["tid"]),
            "ino": ino or None,
            "first": first,
            "count": int(ev["count"]),
            "to": Share.PRIVATE.value if to_private else Share.SHARED.value,
            "interface": interface,
            "result": int(ev["result"]),
            "latency_ns": int(ev["arg2"]),
        }
        self.conversions.append(entry)
        if not ino:
            return  # unattributed: a gpa outside every binding seen
        state = self.inode(ino, ts)
        state.counts["conversion_attempts"] += 1
        if ev["result"] == 0:
            target = Share.PRIVATE if to_private else Share.SHARED
            state.shareability.assign(first, first + int(ev["count"]), (target, FROM_CONVERSION))
            state.counts["conversions_to_private" if to_private else "conversions_to_shared"] += 1


def _sum_by(keys: np.ndarray, weights: np.ndarray | None) -> list[tuple[int, int]]:
    uniq, inverse = np.unique(keys, return_inverse=True)
    if weights is None:
        sums = np.bincount(inverse.ravel())
    else:
        sums = np.bincount(inverse.ravel(), weights=weights.astype(np.float64))
    return [(int(k), int(n)) for k, n in zip(uniq.tolist(), sums.tolist(), strict=True)]

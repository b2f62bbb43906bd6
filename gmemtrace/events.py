"""The logical events gmemtrace speaks in, and their binary layout (mirror of bpf/gmem_event.h)."""

from __future__ import annotations

import enum
import errno
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gmemtrace.paths import bpf_source


class Kind(enum.IntEnum):
    """enum gmem_event_kind."""

    CREATE = 1
    BIND = 2
    HOST_FAULT = 3
    HOST_FAULT_REFUSED = 4
    GUEST_FAULT = 5
    ALLOC = 6
    FREE = 7
    PUNCH = 8
    FALLOCATE = 9
    CONVERT = 10
    MEMORY_FAULT_EXIT = 11
    SHAREABILITY_SETUP = 12
    RELEASE = 13
    MMAP = 14
    MUNMAP = 15
    MREMAP = 16
    FORK = 17
    EXEC = 18
    LOST = 19
    END = 20
    COUNTED = 21  # hot events counted in the kernel (the live view's and exporter's mode)
    PAGE_STATE = 22  # pages' state read from the kernel's page bits (same mode)

    @property
    def label(self) -> str:
        return self.name.lower()


class Counter(enum.StrEnum):
    """A per-inode (and per-process, per-thread) total: the one list of counters. Its value
    is its name in reports, ground truths and JSON; `short` names it in --sort and rate
    columns, `header` in narrow tables; `rated`: views show it per second."""

    HOST_FAULTS = "host_faults"
    HOST_FAULTS_REFUSED = "host_faults_refused"  # SIGBUS on a private page
    # SIGBUS past the end of the file (through a mapping longer than it)
    HOST_FAULTS_BEYOND_EOF = "host_faults_beyond_eof"
    GUEST_FAULTS = "guest_faults"
    PAGES_ALLOCATED = "pages_allocated"
    PAGES_FREED = "pages_freed"
    HOLE_PUNCHES = "hole_punches"
    CONVERSION_ATTEMPTS = "conversion_attempts"
    CONVERSIONS_TO_SHARED = "conversions_to_shared"
    CONVERSIONS_TO_PRIVATE = "conversions_to_private"

    @property
    def short(self) -> str:
        return _COUNTER_NAMES[self][0]

    @property
    def header(self) -> str:
        return _COUNTER_NAMES[self][1]

    @property
    def rated(self) -> bool:
        return _COUNTER_NAMES[self][2]

    @property
    def refusal(self) -> bool:
        """A host fault answered with SIGBUS (the fault was taken, then refused: it is not
        also a host fault)."""
        return self in (Counter.HOST_FAULTS_REFUSED, Counter.HOST_FAULTS_BEYOND_EOF)

    @classmethod
    def by_short(cls, short: str) -> Counter:
        return next(c for c in cls if c.short == short)


# (short, header, rated) of each counter, in the order tables show them.
_COUNTER_NAMES: dict[Counter, tuple[str, str, bool]] = {
    Counter.HOST_FAULTS: ("host", "host", True),
    Counter.HOST_FAULTS_REFUSED: ("refused", "ref", True),
    Counter.HOST_FAULTS_BEYOND_EOF: ("beyond", "eof", True),
    Counter.GUEST_FAULTS: ("guest", "guest", True),
    Counter.PAGES_ALLOCATED: ("alloc", "alloc", True),
    Counter.PAGES_FREED: ("free", "free", True),
    Counter.HOLE_PUNCHES: ("punch", "punch", False),
    Counter.CONVERSION_ATTEMPTS: ("conv", "conv", True),
    Counter.CONVERSIONS_TO_SHARED: ("to-shared", "shared", False),
    Counter.CONVERSIONS_TO_PRIVATE: ("to-private", "private", False),
}
RATED = tuple(c for c in Counter if c.rated)  # shown per second
# What tables of totals show: every rated counter, and the punches.
TABULATED = tuple(c for c in Counter if c.rated or c is Counter.HOLE_PUNCHES)
Counts = dict[Counter, int]


def new_counts() -> Counts:
    """Every counter at 0."""
    return dict.fromkeys(Counter, 0)


class Tier(enum.StrEnum):
    """Where a probe attaches, best first: the guest_memfd functions themselves (fentry, then
    kprobes), then stable tracepoints."""

    FENTRY = "fentry"
    KPROBE = "kprobe"
    TRACEPOINT = "tracepoint"

    @property
    def on_functions(self) -> bool:
        return self is not Tier.TRACEPOINT


UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Probe:
    """Which tier serves an event on a capture's kernel, and where it attaches (tier None:
    no tier can). Trace headers and reports write it as "tier: attach"."""

    tier: Tier | None
    attach: str = ""

    def __str__(self) -> str:
        return f"{self.tier.value}: {self.attach}" if self.tier else UNAVAILABLE

    @classmethod
    def parse(cls, text: str) -> Probe:
        """The probe a trace file's header names (the one reader of that form)."""
        tier, _, attach = text.partition(": ")
        return cls(Tier(tier), attach) if tier in set(Tier) else cls(None)


# EV_GUEST_FAULT flags: where the fault was seen (bpf/gmem_event.h).
GUEST_FAULT_TIMED = 0x1  # kvm_gmem_get_pfn: with its result and latency
GUEST_FAULT_BY_GPA = 0x2  # kvm:kvm_page_fault: by guest physical address


class PageState(enum.IntEnum):
    """What an EV_PAGE_STATE record says its pages are (bpf/gmem_event.h: PAGES_*)."""

    FAULTED = 0  # faulted by the host in the read generation that just ended
    RESIDENT = 1  # in the page cache
    GONE = 2  # no longer in it


# EV_HOST_FAULT_REFUSED flags: the access refused, where the probe tells.
ACCESS_KNOWN = 0x1
ACCESS_WRITE = 0x2


def access_name(flags: int) -> str:
    """A refused fault's access: "write", "read", or "" where the probe did not tell."""
    if not flags & ACCESS_KNOWN:
        return ""
    return "write" if flags & ACCESS_WRITE else "read"


CONV_TO_PRIVATE = 0x1
CONV_BLOCKED = 0x2  # refused: arg holds the page that blocked it (error_offset)
CONV_IFACE_ATTRIBUTES2 = 0x10
CONV_IFACE_VM_ATTRIBUTES = 0x20
CONV_IFACE_GMEM_CONVERT = 0x40


class Interface(enum.StrEnum):
    """How a conversion was asked for (its CONVERT record's flag)."""

    ATTRIBUTES2 = "KVM_SET_MEMORY_ATTRIBUTES2"  # on the guest_memfd, by page offset
    VM_ATTRIBUTES = "KVM_SET_MEMORY_ATTRIBUTES"  # on the VM, by guest physical address
    GMEM_CONVERT = "KVM_GMEM_CONVERT"  # the RFC's ioctls on the guest_memfd
    KERNEL = "kernel"  # seen in a guest_memfd function, whoever asked

    @classmethod
    def of(cls, flags: int) -> Interface:
        bits = {
            CONV_IFACE_ATTRIBUTES2: cls.ATTRIBUTES2,
            CONV_IFACE_VM_ATTRIBUTES: cls.VM_ATTRIBUTES,
            CONV_IFACE_GMEM_CONVERT: cls.GMEM_CONVERT,
        }
        return next((i for bit, i in bits.items() if flags & bit), cls.KERNEL)


EVENT_DTYPE = np.dtype(
    [
        ("ts_ns", "<u8"),
        ("pid", "<u4"),
        ("tid", "<u4"),
        ("kind", "<u2"),
        ("flags", "<u2"),
        ("result", "<i4"),
        ("ino", "<u8"),
        ("first", "<u8"),
        ("count", "<u8"),
        ("arg", "<u8"),
        ("arg2", "<u8"),
        ("comm", "S16"),
    ]
)


# What the record's generic fields hold, per kind, by name (bpf/gmem_event.h says the
# same beside each kind). ino, first (a page index) and count (pages) mean the same for
# every kind that has them; flags, arg and arg2 differ.
FIELDS: dict[Kind, dict[str, str]] = {
    Kind.CREATE: {"size_pages": "count", "gmem_flags": "arg", "dev": "arg2"},
    Kind.BIND: {"gpa": "arg", "slot": "arg2"},
    Kind.HOST_FAULT: {"error_code": "flags", "address": "arg", "asid": "arg2"},
    Kind.HOST_FAULT_REFUSED: {"address": "arg", "access": "flags"},
    # latency with GUEST_FAULT_TIMED, the error code with GUEST_FAULT_BY_GPA (first: the gfn)
    Kind.GUEST_FAULT: {"gpa": "arg", "latency_ns": "arg2", "error_code": "arg2"},
    Kind.PUNCH: {"mode": "flags", "latency_ns": "arg"},
    Kind.FALLOCATE: {"mode": "flags", "latency_ns": "arg"},
    # gpa for KVM_SET_MEMORY_ATTRIBUTES; with CONV_BLOCKED, the page that blocked it
    Kind.CONVERT: {"gpa": "arg", "blocking_page": "arg", "latency_ns": "arg2"},
    Kind.SHAREABILITY_SETUP: {"private": "flags", "gmem_flags": "arg"},
    Kind.MEMORY_FAULT_EXIT: {"exit_flags": "flags", "gpa": "arg", "size": "arg2"},
    Kind.RELEASE: {"size_pages": "count"},
    Kind.MMAP: {"address": "arg", "asid": "arg2"},
    Kind.MUNMAP: {"address": "arg", "asid": "arg2"},
    Kind.MREMAP: {"address": "arg", "old_address": "arg2"},
    Kind.FORK: {"child": "arg", "asid": "arg2"},
    Kind.EXEC: {"asid": "arg2"},
    Kind.LOST: {"lost_total": "count", "since_ns": "arg", "refused_total": "arg2"},
    Kind.COUNTED: {"counted_kind": "arg"},
    Kind.PAGE_STATE: {"state": "flags"},
}
COMMON = ("ts_ns", "pid", "tid", "kind", "flags", "result", "ino", "first", "count", "comm")

# CREATE and MMAP flag: found in /proc at attach, not seen happening.
DISCOVERED = 0x1


def column(kind: Kind, name: str) -> str:
    """The record field that holds `name` for events of `kind`."""
    if name in COMMON:
        return name
    return FIELDS[kind][name]


def make_events(*rows: Mapping[str, int | bytes]) -> np.ndarray:
    """Records built by name: each row a dict with "kind", the common fields it sets and
    the kind's named fields (FIELDS); what it leaves out is 0."""
    out = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, row in enumerate(rows):
        kind = Kind(int(row["kind"]))
        for name, value in row.items():
            out[i][column(kind, name)] = value
    return out


def c_event_size() -> int:
    """sizeof(struct gmem_event) as bpf/gmem_event.h declares it (for the layout test)."""
    text = bpf_source("gmem_event.h").read_text()
    body = text[
        text.index("struct gmem_event {") : text.index("};", text.index("struct gmem_event {"))
    ]
    sizes = {"u64": 8, "u32": 4, "s32": 4, "u16": 2}
    total = 0
    for ctype, name in re.findall(r"^\s+(\w+)\s+(\w+(?:\[\d+\])?);", body, re.MULTILINE):
        count = int(name[name.index("[") + 1 : -1]) if "[" in name else 1
        total += (1 if ctype == "char" else sizes[ctype]) * count
    return total


def result_name(result: int) -> str:
    """A kernel result as every output names it: "ok" for 0, the errno's name for -errno
    ("EAGAIN"), the number itself otherwise."""
    if result == 0:
        return "ok"
    return errno.errorcode.get(-result, str(result))

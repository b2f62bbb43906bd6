"""The logical events gmemtrace speaks in, and their binary layout (mirror of bpf/gmem_event.h)."""

from __future__ import annotations

import enum
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

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Counter:
    """A per-inode total: its name in reports and ground truths, its short name (--sort,
    rate columns), the header of narrow tables, and whether views show it per second."""

    name: str
    short: str
    header: str
    rated: bool


# The one list of counters: reports, ground truths, rates, tables and --sort read it.
COUNTER_TABLE = (
    Counter("host_faults", "host", "host", True),
    Counter("host_faults_refused", "refused", "ref", True),  # SIGBUS on a private page
    # SIGBUS past the end of the file (through a mapping longer than it)
    Counter("host_faults_beyond_eof", "beyond", "eof", True),
    Counter("guest_faults", "guest", "guest", True),
    Counter("pages_allocated", "alloc", "alloc", True),
    Counter("pages_freed", "free", "free", True),
    Counter("hole_punches", "punch", "punch", False),
    Counter("conversion_attempts", "conv", "conv", True),
    Counter("conversions_to_shared", "to-shared", "shared", False),
    Counter("conversions_to_private", "to-private", "private", False),
)
COUNTERS = tuple(c.name for c in COUNTER_TABLE)
RATED = tuple(c.name for c in COUNTER_TABLE if c.rated)  # shown per second
BY_SHORT_NAME = {c.short: c.name for c in COUNTER_TABLE}

# EV_GUEST_FAULT flags: where the fault was seen (bpf/gmem_event.h).
GUEST_FAULT_TIMED = 0x1  # kvm_gmem_get_pfn: with its result and latency
GUEST_FAULT_BY_GPA = 0x2  # kvm:kvm_page_fault: by guest physical address

CONV_TO_PRIVATE = 0x1
CONV_IFACE_ATTRIBUTES2 = 0x10
CONV_IFACE_VM_ATTRIBUTES = 0x20
CONV_IFACE_GMEM_CONVERT = 0x40
CONV_INTERFACES = {
    CONV_IFACE_ATTRIBUTES2: "KVM_SET_MEMORY_ATTRIBUTES2",
    CONV_IFACE_VM_ATTRIBUTES: "KVM_SET_MEMORY_ATTRIBUTES",
    CONV_IFACE_GMEM_CONVERT: "KVM_GMEM_CONVERT",
}

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
    Kind.HOST_FAULT_REFUSED: {"address": "arg"},
    # latency with GUEST_FAULT_TIMED, the error code with GUEST_FAULT_BY_GPA (first: the gfn)
    Kind.GUEST_FAULT: {"gpa": "arg", "latency_ns": "arg2", "error_code": "arg2"},
    Kind.PUNCH: {"mode": "flags", "latency_ns": "arg"},
    Kind.FALLOCATE: {"mode": "flags", "latency_ns": "arg"},
    Kind.CONVERT: {"gpa": "arg", "latency_ns": "arg2"},
    Kind.MEMORY_FAULT_EXIT: {"exit_flags": "flags", "gpa": "arg", "size": "arg2"},
    Kind.RELEASE: {"size_pages": "count"},
    Kind.MMAP: {"address": "arg", "asid": "arg2"},
    Kind.MUNMAP: {"address": "arg", "asid": "arg2"},
    Kind.MREMAP: {"address": "arg", "old_address": "arg2"},
    Kind.FORK: {"child": "arg", "asid": "arg2"},
    Kind.EXEC: {"asid": "arg2"},
    Kind.LOST: {"lost_total": "count", "since_ns": "arg", "refused_total": "arg2"},
}
COMMON = ("ts_ns", "pid", "tid", "kind", "flags", "result", "ino", "first", "count", "comm")

# CREATE and MMAP flag: found in /proc at attach, not seen happening.
DISCOVERED = 0x1


def column(kind: Kind, name: str) -> str:
    """The record field that holds `name` for events of `kind`."""
    if name in COMMON:
        return name
    return FIELDS[kind][name]


def make_events(*rows: Mapping[str, int]) -> np.ndarray:
    """Records built by name: each row a dict with "kind", the common fields it sets and
    the kind's named fields (FIELDS); what it leaves out is 0."""
    out = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, row in enumerate(rows):
        kind = Kind(row["kind"])
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

"""The logical events gmemtrace speaks in, and their binary layout (mirror of bpf/gmem_event.h)."""

from __future__ import annotations

import enum
import re

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


# Per-inode totals, in the words of reports and ground truths alike.
COUNTERS = (
    "host_faults",
    "host_faults_refused",  # SIGBUS on a private page
    "host_faults_beyond_eof",  # SIGBUS past the end of the file (a mapping longer than it)
    "guest_faults",
    "pages_allocated",
    "pages_freed",
    "hole_punches",
    "conversion_attempts",
    "conversions_to_shared",
    "conversions_to_private",
)

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

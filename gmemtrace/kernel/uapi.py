"""KVM and guest_memfd uAPI: ioctl numbers, argument structs, flags and capabilities.

Values follow include/uapi/linux/kvm.h (mainline 6.18) plus the two conversion
interfaces proposed upstream; see docs in ../shared/docs/KERNEL_CATALOG.md. Pure
data: reading a trace imports this, never the ioctl calls (kvm.py).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from dataclasses import dataclass

PAGE_SIZE = 4096

KVMIO = 0xAE
KVM_GMEM_IO = 0xAF  # the May 2025 RFC's conversion ioctls

_IOC_WRITE = 1
_IOC_READ = 2


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (kind << 8) | nr


def _io(kind: int, nr: int) -> int:
    return _ioc(0, kind, nr, 0)


def _iow(kind: int, nr: int, size: int) -> int:
    return _ioc(_IOC_WRITE, kind, nr, size)


def _ior(kind: int, nr: int, size: int) -> int:
    return _ioc(_IOC_READ, kind, nr, size)


def _iowr(kind: int, nr: int, size: int) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, kind, nr, size)


u32 = ctypes.c_uint32
u64 = ctypes.c_uint64


class CreateGuestMemfd(ctypes.Structure):
    _fields_ = [("size", u64), ("flags", u64), ("reserved", u64 * 6)]


class UserspaceMemoryRegion2(ctypes.Structure):
    _fields_ = [
        ("slot", u32),
        ("flags", u32),
        ("guest_phys_addr", u64),
        ("memory_size", u64),
        ("userspace_addr", u64),
        ("guest_memfd_offset", u64),
        ("guest_memfd", u32),
        ("pad1", u32),
        ("pad2", u64 * 14),
    ]


class MemoryAttributes(ctypes.Structure):
    """VM-wide attributes by guest physical address (KVM_SET_MEMORY_ATTRIBUTES)."""

    _fields_ = [("address", u64), ("size", u64), ("attributes", u64), ("flags", u64)]


class MemoryAttributes2(ctypes.Structure):
    """In-place conversion series: attributes by byte offset, issued on the guest_memfd fd."""

    _fields_ = [
        ("offset", u64),
        ("size", u64),
        ("attributes", u64),
        ("flags", u64),
        ("error_offset", u64),
        ("reserved", u64 * 11),
    ]


class GmemConvert(ctypes.Structure):
    """May 2025 RFC v2: KVM_GMEM_CONVERT_SHARED / _PRIVATE argument."""

    _fields_ = [("offset", u64), ("size", u64), ("error_offset", u64), ("reserved", u64 * 5)]


class Segment(ctypes.Structure):
    _fields_ = [
        ("base", u64),
        ("limit", u32),
        ("selector", ctypes.c_uint16),
        ("type", ctypes.c_uint8),
        ("present", ctypes.c_uint8),
        ("dpl", ctypes.c_uint8),
        ("db", ctypes.c_uint8),
        ("s", ctypes.c_uint8),
        ("l", ctypes.c_uint8),
        ("g", ctypes.c_uint8),
        ("avl", ctypes.c_uint8),
        ("unusable", ctypes.c_uint8),
        ("padding", ctypes.c_uint8),
    ]


class DTable(ctypes.Structure):
    _fields_ = [("base", u64), ("limit", ctypes.c_uint16), ("padding", ctypes.c_uint16 * 3)]


class Sregs(ctypes.Structure):
    _fields_ = [
        ("cs", Segment),
        ("ds", Segment),
        ("es", Segment),
        ("fs", Segment),
        ("gs", Segment),
        ("ss", Segment),
        ("tr", Segment),
        ("ldt", Segment),
        ("gdt", DTable),
        ("idt", DTable),
        ("cr0", u64),
        ("cr2", u64),
        ("cr3", u64),
        ("cr4", u64),
        ("cr8", u64),
        ("efer", u64),
        ("apic_base", u64),
        ("interrupt_bitmap", u64 * 4),
    ]


class Regs(ctypes.Structure):
    _REGISTERS = "rax rbx rcx rdx rsi rdi rsp rbp r8 r9 r10 r11 r12 r13 r14 r15 rip rflags"
    _fields_ = [(name, u64) for name in _REGISTERS.split()]


class RunHeader(ctypes.Structure):
    """The fixed head of struct kvm_run, followed at offset 32 by the exit union."""

    _fields_ = [
        ("request_interrupt_window", ctypes.c_uint8),
        ("immediate_exit", ctypes.c_uint8),
        ("padding1", ctypes.c_uint8 * 6),
        ("exit_reason", u32),
        ("ready_for_interrupt_injection", ctypes.c_uint8),
        ("if_flag", ctypes.c_uint8),
        ("flags", ctypes.c_uint16),
        ("cr8", u64),
        ("apic_base", u64),
    ]


class MemoryFaultExit(ctypes.Structure):
    _fields_ = [("flags", u64), ("gpa", u64), ("size", u64)]


KVM_RUN_EXIT_UNION_OFFSET = 32

# System and VM ioctls.
KVM_GET_API_VERSION = _io(KVMIO, 0x00)
KVM_CREATE_VM = _io(KVMIO, 0x01)
KVM_CHECK_EXTENSION = _io(KVMIO, 0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(KVMIO, 0x04)
KVM_CREATE_VCPU = _io(KVMIO, 0x41)
KVM_SET_USER_MEMORY_REGION2 = _iow(KVMIO, 0x49, ctypes.sizeof(UserspaceMemoryRegion2))
KVM_RUN = _io(KVMIO, 0x80)
KVM_SET_REGS = _iow(KVMIO, 0x82, ctypes.sizeof(Regs))
KVM_GET_SREGS = _ior(KVMIO, 0x83, ctypes.sizeof(Sregs))
KVM_SET_SREGS = _iow(KVMIO, 0x84, ctypes.sizeof(Sregs))
KVM_SET_MEMORY_ATTRIBUTES = _iow(KVMIO, 0xD2, ctypes.sizeof(MemoryAttributes))
KVM_CREATE_GUEST_MEMFD = _iowr(KVMIO, 0xD4, ctypes.sizeof(CreateGuestMemfd))
# On the guest_memfd fd: the in-place conversion series and the May 2025 RFC.
KVM_SET_MEMORY_ATTRIBUTES2 = _iowr(KVMIO, 0xD2, ctypes.sizeof(MemoryAttributes2))
KVM_GMEM_CONVERT_SHARED = _iowr(KVM_GMEM_IO, 0x41, ctypes.sizeof(GmemConvert))
KVM_GMEM_CONVERT_PRIVATE = _iowr(KVM_GMEM_IO, 0x42, ctypes.sizeof(GmemConvert))

# VM types (KVM_CREATE_VM's argument on x86; KVM_CAP_VM_TYPES is a mask of them).
KVM_X86_DEFAULT_VM = 0
KVM_X86_SW_PROTECTED_VM = 1
VM_TYPE_NAMES = {
    0: "KVM_X86_DEFAULT_VM",
    1: "KVM_X86_SW_PROTECTED_VM",
    2: "KVM_X86_SEV_VM",
    3: "KVM_X86_SEV_ES_VM",
    4: "KVM_X86_SNP_VM",
    5: "KVM_X86_TDX_VM",
}


def vm_types(mask: int) -> list[int]:
    """The VM types in a KVM_CAP_VM_TYPES mask (a kernel without the capability: the
    default type only)."""
    return [t for t in range(64) if mask >> t & 1] or [KVM_X86_DEFAULT_VM]


KVM_MEM_GUEST_MEMFD = 1 << 2
KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3
KVM_MEMORY_EXIT_FLAG_PRIVATE = 1 << 3

KVM_EXIT_HLT = 5
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_MEMORY_FAULT = 39

GUEST_MEMFD_FLAG_MMAP = 1 << 0
GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1
GUEST_MEMFD_FLAGS = {GUEST_MEMFD_FLAG_MMAP: "MMAP", GUEST_MEMFD_FLAG_INIT_SHARED: "INIT_SHARED"}


@dataclass(frozen=True)
class Capability:
    name: str
    number: int


CAP_MEMORY_ATTRIBUTES = Capability("KVM_CAP_MEMORY_ATTRIBUTES", 233)
CAP_GUEST_MEMFD = Capability("KVM_CAP_GUEST_MEMFD", 234)
CAP_VM_TYPES = Capability("KVM_CAP_VM_TYPES", 235)
CAP_GUEST_MEMFD_FLAGS = Capability("KVM_CAP_GUEST_MEMFD_FLAGS", 244)


def inplace_capability(environ: Mapping[str, str] = os.environ) -> Capability:
    """The in-place conversion series' capability. Its number churned between revisions
    (246 -> 250 in v8), so it is only asked on kernels whose BTF carries that series'
    functions, and GMEMTRACE_INPLACE_CAP names another."""
    return Capability(
        "KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES", int(environ.get("GMEMTRACE_INPLACE_CAP", "250"))
    )


def decode_gmem_flags(flags: int) -> list[str]:
    """Names of the guest_memfd creation flags set in `flags` (unknown bits as hex)."""
    names = [name for bit, name in GUEST_MEMFD_FLAGS.items() if flags & bit]
    unknown = flags & ~sum(GUEST_MEMFD_FLAGS)
    if unknown:
        names.append(hex(unknown))
    return names

"""A small VMM over the KVM ioctls: VMs, guest_memfds, host mappings, memslots, vCPUs."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import struct
from dataclasses import dataclass, field

from gmemtrace.errors import GmemtraceError
from gmemtrace.events import Interface
from gmemtrace.kernel import kvm
from gmemtrace.kernel.uapi import PAGE_SIZE

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.mmap.restype = ctypes.c_void_p
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.vmsplice.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_uint]
_libc.vmsplice.restype = ctypes.c_ssize_t


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class PageHold:
    """A page of a host mapping held by the kernel: vmsplice()d into a pipe, whose buffer
    keeps a reference to it until read (what a page in use by I/O looks like to a
    conversion). `release()` reads it out."""

    def __init__(self, address: int) -> None:
        self.read_fd, self.write_fd = os.pipe()
        iov = _Iovec(address, PAGE_SIZE)
        if _libc.vmsplice(self.write_fd, ctypes.byref(iov), 1, 0) != PAGE_SIZE:
            err = ctypes.get_errno()
            self.release()
            raise GmemtraceError(f"vmsplice: {os.strerror(err)}")

    def release(self) -> None:
        if self.read_fd >= 0:
            os.set_blocking(self.read_fd, False)
            try:
                while os.read(self.read_fd, PAGE_SIZE):
                    pass
            except BlockingIOError:
                pass
            for fd in (self.read_fd, self.write_fd):
                os.close(fd)
            self.read_fd = self.write_fd = -1


_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
_libc.mremap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_void_p,
]
_libc.mremap.restype = ctypes.c_void_p
MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
PROT_NONE = 0  # not in the mmap module of Python 3.11

MAP_FAILED = ctypes.c_void_p(-1).value
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

KVM_DEVICE = "/dev/kvm"


def _check(ret: int, what: str) -> None:
    if ret < 0:
        raise kvm.KvmError(what, ctypes.get_errno())


def _map(length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    addr = _libc.mmap(None, length, prot, flags, fd, offset)
    if addr in (None, MAP_FAILED):
        raise kvm.KvmError("mmap", ctypes.get_errno())
    return int(addr)


@dataclass
class HostMapping:
    """A MAP_SHARED mapping of a guest_memfd range in this process."""

    gmem: GuestMemfd
    addr: int
    offset_pages: int
    npages: int

    def address(self, page: int) -> int:
        """Host virtual address of guest_memfd page index `page`."""
        if not self.offset_pages <= page < self.offset_pages + self.npages:
            raise ValueError(f"page {page} outside the mapping")
        return self.addr + (page - self.offset_pages) * PAGE_SIZE

    def touch(self, first: int, count: int, value: int = 0xA5) -> None:
        """Write `value` to every byte of `count` pages from page index `first`."""
        ctypes.memset(self.address(first), value, count * PAGE_SIZE)

    def read(self, page: int, offset: int = 0, length: int = 1) -> bytes:
        return ctypes.string_at(self.address(page) + offset, length)

    def zap(self, first: int, count: int) -> None:
        """MADV_DONTNEED: drop the page table entries; the pages stay in the guest_memfd."""
        _check(_libc.madvise(self.address(first), count * PAGE_SIZE, mmap.MADV_DONTNEED), "madvise")

    def resident(self) -> list[bool]:
        """mincore(): which pages of the mapping are in the guest_memfd's page cache."""
        vec = ctypes.create_string_buffer(self.npages)
        _check(_libc.mincore(self.addr, self.npages * PAGE_SIZE, vec), "mincore")
        return [bool(b & 1) for b in vec.raw]

    def present(self) -> set[int]:
        """Page indexes whose page table entry is present in this process (/proc/self/pagemap)."""
        with open("/proc/self/pagemap", "rb") as pagemap:
            pagemap.seek(self.addr // PAGE_SIZE * 8)
            raw = pagemap.read(self.npages * 8)
        entries = struct.unpack(f"<{self.npages}Q", raw)
        return {self.offset_pages + i for i, entry in enumerate(entries) if entry >> 63}

    def move(self) -> int:
        """mremap() the whole mapping to a fresh address; its page table entries move along."""
        size = self.npages * PAGE_SIZE
        target = _map(size, PROT_NONE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        addr = _libc.mremap(self.addr, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, target)
        if addr in (None, MAP_FAILED):
            err = ctypes.get_errno()
            _libc.munmap(target, size)
            raise kvm.KvmError("mremap", err)
        self.addr = int(addr)
        return self.addr

    def unmap_pages(self, first: int, count: int) -> None:
        """munmap() part of the mapping (it must stay one piece: from the start or to the end)."""
        end = self.offset_pages + self.npages
        if first != self.offset_pages and first + count != end:
            raise ValueError("only a prefix or a suffix can be unmapped")
        _check(_libc.munmap(self.address(first), count * PAGE_SIZE), "munmap")
        if first == self.offset_pages:
            self.addr += count * PAGE_SIZE
            self.offset_pages += count
        self.npages -= count

    def unmap(self) -> None:
        if self.addr:
            _libc.munmap(self.addr, self.npages * PAGE_SIZE)
            self.addr = 0


@dataclass
class GuestMemfd:
    """One guest_memfd: its fd, inode number, size and creation flags."""

    vm: Vm
    fd: int
    ino: int
    size: int
    flags: int
    mappings: list[HostMapping] = field(default_factory=list)

    @property
    def npages(self) -> int:
        return self.size // PAGE_SIZE

    def map(self, offset_pages: int = 0, npages: int | None = None) -> HostMapping:
        """mmap(MAP_SHARED) a page range; needs GUEST_MEMFD_FLAG_MMAP."""
        npages = self.npages - offset_pages if npages is None else npages
        addr = _map(
            npages * PAGE_SIZE,
            mmap.PROT_READ | mmap.PROT_WRITE,
            mmap.MAP_SHARED,
            self.fd,
            offset_pages * PAGE_SIZE,
        )
        mapping = HostMapping(self, addr, offset_pages, npages)
        self.mappings.append(mapping)
        return mapping

    def fallocate(self, first: int, count: int) -> None:
        _check(
            _libc.fallocate(self.fd, FALLOC_FL_KEEP_SIZE, first * PAGE_SIZE, count * PAGE_SIZE),
            "fallocate",
        )

    def punch(self, first: int, count: int) -> None:
        mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        _check(_libc.fallocate(self.fd, mode, first * PAGE_SIZE, count * PAGE_SIZE), "punch")

    def close(self) -> None:
        for mapping in self.mappings:
            mapping.unmap()
        self.mappings.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(frozen=True)
class ConversionAttempt:
    """One conversion request as issued, and what the kernel answered."""

    interface: Interface
    to_private: bool
    first: int
    count: int
    errno: int
    blocking_page: int | None = None  # error_offset's page, where the kernel wrote it


@dataclass
class Vm:
    """A KVM virtual machine, of the default type or another the kernel offers."""

    kvm_fd: int
    fd: int
    vm_type: int = kvm.KVM_X86_DEFAULT_VM
    memslots: dict[int, tuple[int, int]] = field(default_factory=dict)  # slot -> (gpa, size)
    _anon: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def create(cls, vm_type: int = kvm.KVM_X86_DEFAULT_VM) -> Vm:
        try:
            kvm_fd = os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise GmemtraceError(f"{KVM_DEVICE} does not exist: KVM is not available") from None
        except PermissionError:
            raise GmemtraceError(f"{KVM_DEVICE}: permission denied (run as root)") from None
        try:
            if vm_type != kvm.KVM_X86_DEFAULT_VM:
                offered = kvm.vm_types(kvm.check_extension(kvm_fd, kvm.CAP_VM_TYPES))
                if vm_type not in offered:
                    names = ", ".join(kvm.VM_TYPE_NAMES.get(t, str(t)) for t in offered)
                    raise GmemtraceError(
                        f"this kernel offers no {kvm.VM_TYPE_NAMES.get(vm_type, vm_type)} "
                        f"(KVM_CAP_VM_TYPES: {names or 'none'}); it needs "
                        "CONFIG_KVM_SW_PROTECTED_VM (lab/run --kernel debian-6.12-sw)"
                    )
            fd = kvm.ioctl(kvm_fd, kvm.KVM_CREATE_VM, vm_type)
        except GmemtraceError:
            os.close(kvm_fd)
            raise
        return cls(kvm_fd, fd, vm_type)

    def capability(self, cap: kvm.Capability) -> int:
        return kvm.check_extension(self.fd, cap)

    def create_guest_memfd(self, size: int, flags: int) -> GuestMemfd:
        args = kvm.CreateGuestMemfd(size=size, flags=flags)
        fd = kvm.ioctl(self.fd, kvm.KVM_CREATE_GUEST_MEMFD, args)
        return GuestMemfd(self, fd, os.fstat(fd).st_ino, size, flags)

    def bind(
        self, slot: int, gpa: int, gmem: GuestMemfd, first: int, count: int, userspace_addr: int
    ) -> None:
        """Memslot `slot` at `gpa` backed by guest_memfd pages [first, first+count); its
        shared memory at `userspace_addr` (a mapping of the guest_memfd itself, or other)."""
        region = kvm.UserspaceMemoryRegion2(
            slot=slot,
            flags=kvm.KVM_MEM_GUEST_MEMFD,
            guest_phys_addr=gpa,
            memory_size=count * PAGE_SIZE,
            userspace_addr=userspace_addr,
            guest_memfd_offset=first * PAGE_SIZE,
            guest_memfd=gmem.fd,
        )
        kvm.ioctl(self.fd, kvm.KVM_SET_USER_MEMORY_REGION2, region)
        self.memslots[slot] = (gpa, count * PAGE_SIZE)

    def anonymous_memory(self, size: int) -> int:
        """Plain anonymous shared memory, unmapped when the VM closes; its address."""
        addr = _map(
            size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1, 0
        )
        self._anon.append((addr, size))
        return addr

    def set_attributes(self, gpa: int, size: int, *, private: bool) -> int:
        """KVM_SET_MEMORY_ATTRIBUTES on a guest physical range; 0 or the errno."""
        attributes = kvm.KVM_MEMORY_ATTRIBUTE_PRIVATE if private else 0
        request = kvm.MemoryAttributes(address=gpa, size=size, attributes=attributes)
        return kvm.try_ioctl(self.fd, kvm.KVM_SET_MEMORY_ATTRIBUTES, request)

    def add_anonymous_slot(self, slot: int, gpa: int, size: int) -> int:
        """A memslot of plain anonymous memory (for guest code); returns its host address."""
        addr = self.anonymous_memory(size)
        region = kvm.UserspaceMemoryRegion2(
            slot=slot, guest_phys_addr=gpa, memory_size=size, userspace_addr=addr
        )
        kvm.ioctl(self.fd, kvm.KVM_SET_USER_MEMORY_REGION2, region)
        self.memslots[slot] = (gpa, size)
        return addr

    def convert(
        self, gmem: GuestMemfd, first: int, count: int, *, to_private: bool, gpa: int | None
    ) -> list[ConversionAttempt]:
        """Ask the kernel to convert a range through every interface this kernel might have.

        The in-place interface (KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd fd) is
        always tried; the VM-wide KVM_SET_MEMORY_ATTRIBUTES too when the range is bound
        (`gpa` known). Kernels without them answer with an errno, which is recorded.
        """
        attributes = kvm.KVM_MEMORY_ATTRIBUTE_PRIVATE if to_private else 0
        inplace = kvm.MemoryAttributes2(
            offset=first * PAGE_SIZE, size=count * PAGE_SIZE, attributes=attributes
        )
        attempts = [
            ConversionAttempt(
                Interface.ATTRIBUTES2,
                to_private,
                first,
                count,
                kvm.try_ioctl(gmem.fd, kvm.KVM_SET_MEMORY_ATTRIBUTES2, inplace),
            )
        ]
        if gpa is not None:
            err = self.set_attributes(gpa, count * PAGE_SIZE, private=to_private)
            attempts.append(
                ConversionAttempt(Interface.VM_ATTRIBUTES, to_private, first, count, err)
            )
        return attempts

    def convert_in_place(
        self, gmem: GuestMemfd, first: int, count: int, *, to_private: bool
    ) -> ConversionAttempt:
        """KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd alone (in-place conversion): with
        EAGAIN (a page in use) or ENOMEM, the page that blocked it (error_offset)."""
        attributes = kvm.KVM_MEMORY_ATTRIBUTE_PRIVATE if to_private else 0
        request = kvm.MemoryAttributes2(
            offset=first * PAGE_SIZE, size=count * PAGE_SIZE, attributes=attributes
        )
        err = kvm.try_ioctl(gmem.fd, kvm.KVM_SET_MEMORY_ATTRIBUTES2, request)
        blocking = (
            request.error_offset // PAGE_SIZE if err in (errno.EAGAIN, errno.ENOMEM) else None
        )
        return ConversionAttempt(Interface.ATTRIBUTES2, to_private, first, count, err, blocking)

    def create_vcpu(self) -> Vcpu:
        fd = kvm.ioctl(self.fd, kvm.KVM_CREATE_VCPU, 0)
        size = kvm.ioctl(self.kvm_fd, kvm.KVM_GET_VCPU_MMAP_SIZE, 0)
        run = _map(size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
        return Vcpu(fd, run, size)

    def close(self) -> None:
        for addr, size in self._anon:
            _libc.munmap(addr, size)
        self._anon.clear()
        for fd in (self.fd, self.kvm_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.kvm_fd = -1


@dataclass(frozen=True)
class VcpuExit:
    reason: int
    memory_fault: kvm.MemoryFaultExit | None = None


@dataclass
class Vcpu:
    """A vCPU started in 16-bit real mode at a chosen code segment."""

    fd: int
    run_addr: int
    run_size: int

    def start_real_mode(self, code_gpa: int) -> None:
        """Point CS:IP at `code_gpa` (paragraph aligned) with a flat real-mode setup."""
        sregs = kvm.Sregs()
        kvm.ioctl(self.fd, kvm.KVM_GET_SREGS, sregs)
        sregs.cs.selector = code_gpa >> 4
        sregs.cs.base = code_gpa
        kvm.ioctl(self.fd, kvm.KVM_SET_SREGS, sregs)
        kvm.ioctl(self.fd, kvm.KVM_SET_REGS, kvm.Regs(rip=0, rflags=2))

    def run(self) -> VcpuExit:
        """KVM_RUN once; a memory-fault exit (EFAULT + exit reason 39) is an exit, not an error."""
        header = kvm.RunHeader.from_address(self.run_addr)
        try:
            kvm.ioctl(self.fd, kvm.KVM_RUN, 0)
        except kvm.KvmError as err:
            if err.errno != errno.EFAULT or header.exit_reason != kvm.KVM_EXIT_MEMORY_FAULT:
                raise
        if header.exit_reason == kvm.KVM_EXIT_MEMORY_FAULT:
            fault = kvm.MemoryFaultExit.from_address(self.run_addr + kvm.KVM_RUN_EXIT_UNION_OFFSET)
            return VcpuExit(header.exit_reason, kvm.MemoryFaultExit.from_buffer_copy(fault))
        return VcpuExit(header.exit_reason)

    def close(self) -> None:
        if self.run_addr:
            _libc.munmap(self.run_addr, self.run_size)
            self.run_addr = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

"""The workload's operations: each does the real thing on KVM and records it in the ledger."""

from __future__ import annotations

import ctypes
import errno
import faulthandler
import os
import platform
import random
import signal
import time
from dataclasses import dataclass
from typing import Any

from gmemtrace.errors import GmemtraceError
from gmemtrace.events import Interface
from gmemtrace.kernel import kvm
from gmemtrace.kernel.uapi import PAGE_SIZE
from gmemtrace.workload import guest
from gmemtrace.workload.truth import PRIVATE, InodeTruth
from gmemtrace.workload.vmm import GuestMemfd, HostMapping, PageHold, Vcpu, Vm

CODE_GPA = 0xF0000  # guest code lives in its own anonymous memslot, below 1 MiB
CODE_SLOT = 0
PATTERNS = ("sequential", "reverse", "random")


@dataclass(frozen=True)
class Binding:
    slot: int
    base_gfn: int
    gmem: GuestMemfd
    host: HostMapping | None  # None: the memslot's shared memory is not the guest_memfd
    first: int
    count: int
    shared_addr: int  # host address of the memslot's first page of shared memory


class Workload:
    """A VM plus its guest_memfds, with a ground-truth ledger of everything done to them."""

    def __init__(
        self,
        scenario: str,
        pause_after_map_s: float = 0.0,
        wait_signal: bool = False,
        vm_type: int = kvm.KVM_X86_DEFAULT_VM,
    ) -> None:
        self.scenario = scenario
        self._pause_s = pause_after_map_s
        self._wait_signal = wait_signal
        if wait_signal:  # blocked from now on, so an early SIGUSR1 waits for sigwait()
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        self.pid = os.getpid()
        self.started_ns = time.monotonic_ns()
        self.vm = Vm.create(vm_type)
        self.private_gfns: set[int] = set()  # KVM_SET_MEMORY_ATTRIBUTES: private frames
        # Shared/private kept in each guest_memfd (in-place conversion): a frame is private
        # when its guest_memfd page is, not by the VM's attributes.
        self.in_place = False
        self.gmems: list[GuestMemfd] = []
        self.truth: dict[int, InodeTruth] = {}
        self.bindings: list[Binding] = []
        self.vcpu: Vcpu | None = None
        self.facts: dict[str, Any] = {}
        self._rng = random.Random(0x6D656D)

    # --- guest_memfd lifecycle -------------------------------------------
    def guest_memfd(self, pages: int, flags: int) -> GuestMemfd:
        gmem = self.vm.create_guest_memfd(pages * PAGE_SIZE, flags)
        self.gmems.append(gmem)
        ledger = InodeTruth(gmem.ino, flags, pages)
        ledger.log("create", 0, pages, self.pid, flags=flags)
        self.truth[gmem.ino] = ledger
        return gmem

    def map(self, gmem: GuestMemfd, first: int = 0, count: int | None = None) -> HostMapping:
        mapping = gmem.map(first, count)
        self.truth[gmem.ino].log("mmap", first, mapping.npages, self.pid, addr=mapping.addr)
        if self._pause_s > 0:  # once: the first mapping exists, nothing touched it yet
            time.sleep(self._pause_s)
            self._pause_s = 0.0
        if self._wait_signal:
            signal.sigwait({signal.SIGUSR1})
            self._wait_signal = False
        return mapping

    # --- host side ---------------------------------------------------------
    def host_touch(
        self,
        mapping: HostMapping,
        first: int,
        count: int,
        pattern: str = "sequential",
        rate: float | None = None,
    ) -> None:
        """Write to `count` pages from `first` in `pattern` order, at most `rate` pages/s."""
        pages = list(range(first, first + count))
        if pattern == "reverse":
            pages.reverse()
        elif pattern == "random":
            self._rng.shuffle(pages)
        elif pattern != "sequential":
            raise GmemtraceError(f"unknown touch pattern {pattern!r}", 2)
        if pattern == "sequential" and rate is None:
            mapping.touch(first, count)  # one memset: as fast as the kernel can fault
        else:
            start = time.monotonic()
            for i, page in enumerate(pages):
                mapping.touch(page, 1)
                if rate:
                    delay = start + (i + 1) / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        self.truth[mapping.gmem.ino].host_touch(id(mapping), pages, self.pid)

    def host_read(self, mapping: HostMapping, page: int, length: int = 2) -> bytes:
        """Read through the host mapping (a read fault if the page is not mapped there)."""
        data = mapping.read(page, 0, length)
        self.truth[mapping.gmem.ino].host_touch(id(mapping), [page], self.pid, op="host_read")
        return data

    def zap(self, mapping: HostMapping, first: int, count: int) -> None:
        mapping.zap(first, count)
        self.truth[mapping.gmem.ino].zap(id(mapping), first, count, self.pid)

    def move(self, mapping: HostMapping) -> None:
        """mremap the mapping elsewhere: the pages it had mapped stay mapped."""
        old = mapping.addr
        new = mapping.move()
        self.truth[mapping.gmem.ino].log(
            "mremap", mapping.offset_pages, mapping.npages, self.pid, old=old, addr=new
        )

    def unmap_pages(self, mapping: HostMapping, first: int, count: int) -> None:
        mapping.unmap_pages(first, count)
        ledger = self.truth[mapping.gmem.ino]
        ledger.host_mapped.get(id(mapping), set()).difference_update(range(first, first + count))
        ledger.log("munmap", first, count, self.pid)

    def fallocate(self, gmem: GuestMemfd, first: int, count: int) -> None:
        gmem.fallocate(first, count)
        self.truth[gmem.ino].fallocate(first, count, self.pid)

    def punch(self, gmem: GuestMemfd, first: int, count: int) -> None:
        gmem.punch(first, count)
        self.truth[gmem.ino].punch(first, count, self.pid)

    def touch_in_child(self, mapping: HostMapping, page: int) -> int:
        """A forked child writes one page; returns the signal that killed it (0: it lived)."""
        address = mapping.address(page)
        pid = os.fork()
        if pid == 0:  # the child: no Python-level handlers between the write and the kernel
            faulthandler.disable()
            signal.signal(signal.SIGBUS, signal.SIG_DFL)
            ctypes.memset(address, 0x5A, 1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        killed_by = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        ledger = self.truth[mapping.gmem.ino]
        if killed_by == signal.SIGBUS:
            ledger.host_refused(page, pid)
        else:
            ledger.host_touch(-pid, [page], pid, op="host_touch_child")
        return killed_by

    # --- guest side --------------------------------------------------------
    def bind(self, slot: int, gpa: int, gmem: GuestMemfd, mapping: HostMapping) -> None:
        """Bind a memslot to the guest_memfd pages that `mapping` covers."""
        shared = mapping.address(mapping.offset_pages)
        self.vm.bind(slot, gpa, gmem, mapping.offset_pages, mapping.npages, shared)
        binding = Binding(
            slot, gpa // PAGE_SIZE, gmem, mapping, mapping.offset_pages, mapping.npages, shared
        )
        self._record_binding(binding)

    def bind_private(self, slot: int, gpa: int, gmem: GuestMemfd) -> None:
        """Bind a memslot as a confidential VM's VMM does: private memory from the
        guest_memfd, shared memory from plain anonymous memory beside it."""
        shared = self.vm.anonymous_memory(gmem.size)
        self.vm.bind(slot, gpa, gmem, 0, gmem.npages, shared)
        self._record_binding(Binding(slot, gpa // PAGE_SIZE, gmem, None, 0, gmem.npages, shared))

    def _record_binding(self, binding: Binding) -> None:
        gmem, slot, gpa = binding.gmem, binding.slot, binding.base_gfn * PAGE_SIZE
        self.bindings.append(binding)
        ledger = self.truth[gmem.ino]
        ledger.memslots.append(
            {
                "slot": slot,
                "base_gfn": binding.base_gfn,
                "first": binding.first,
                "npages": binding.count,
            }
        )
        ledger.log("bind", binding.first, binding.count, self.pid, slot=slot, gpa=gpa)

    def locate(self, gfn: int) -> tuple[Binding, int]:
        """The memslot binding and guest_memfd page index behind guest frame `gfn`."""
        for b in self.bindings:
            if b.base_gfn <= gfn < b.base_gfn + b.count:
                return b, gfn - b.base_gfn + b.first
        raise GmemtraceError(f"guest page {gfn:#x} is not in a guest_memfd memslot", 2)

    def run_guest(self, gfns: list[int]) -> int:
        """Run the vCPU over a program writing a marker into each guest page; returns the exit.

        A memory fault exit (the guest touched a private frame KVM cannot serve privately)
        is answered as QEMU does: the VMM converts the range to shared and resumes."""
        if self.vcpu is None:
            code = self.vm.add_anonymous_slot(CODE_SLOT, CODE_GPA, PAGE_SIZE)
            self._code = code
            self.vcpu = self.vm.create_vcpu()
        program = guest.touch_pages(gfns)
        if len(program) > PAGE_SIZE:
            raise GmemtraceError("guest program larger than its page", 2)
        ctypes.memmove(self._code, program, len(program))
        self.vcpu.start_real_mode(CODE_GPA)
        exit_ = self.vcpu.run()
        while exit_.memory_fault is not None:
            self._memory_fault_exit(exit_.memory_fault)
            exit_ = self.vcpu.run()
        if exit_.reason != kvm.KVM_EXIT_HLT:
            raise GmemtraceError(f"vCPU stopped with exit reason {exit_.reason}, not HLT")
        if self.vm.vm_type != kvm.KVM_X86_DEFAULT_VM:
            self._account_protected(gfns)
            return exit_.reason
        by_binding: dict[int, tuple[Binding, list[int]]] = {}
        for gfn in gfns:
            binding, page = self.locate(gfn)
            by_binding.setdefault(binding.slot, (binding, []))[1].append(page)
        for binding, pages in by_binding.values():
            # Some kernels reach guest_memfd pages through the memslot's host
            # mapping (GUP), which maps them there too: measured, not assumed.
            mapped_by_kvm = binding.host.present() & set(pages) if binding.host else set()
            self.truth[binding.gmem.ino].guest_touch(
                pages, self.pid, id(binding.host), mapped_by_kvm
            )
        return exit_.reason

    def _account_protected(self, gfns: list[int]) -> None:
        """A protected VM's guest accesses: a private frame of a guest_memfd memslot is a
        guest_memfd page (a guest fault unless KVM has it mapped); a shared one is the
        memslot's other memory, which guest_memfd never sees."""
        by_inode: dict[int, list[int]] = {}
        for gfn in gfns:
            located = self._locate(gfn)
            if located is None:
                continue
            binding, page = located
            if self.in_place:
                private = self.truth[binding.gmem.ino].state.get(page) == PRIVATE
            else:
                private = gfn in self.private_gfns
            if private:
                by_inode.setdefault(binding.gmem.ino, []).append(page)
        for ino, pages in by_inode.items():
            self.truth[ino].guest_touch(pages, self.pid)

    def _memory_fault_exit(self, fault: kvm.MemoryFaultExit) -> None:
        private = bool(fault.flags & kvm.KVM_MEMORY_EXIT_FLAG_PRIVATE)
        located = self._locate(fault.gpa // PAGE_SIZE)
        self.facts.setdefault("memory_fault_exits", []).append(
            {
                "gpa": fault.gpa,
                "size": fault.size,
                "private": private,
                "ino": located[0].gmem.ino if located else None,
                "page": located[1] if located else None,
            }
        )
        # The guest wants it the other way: convert, as a VMM does, then resume.
        self.set_attributes(fault.gpa, fault.size // PAGE_SIZE, private=not private)

    def read_shared(self, gfn: int, length: int = 2) -> bytes:
        """What the guest left in the shared memory of a guest_memfd memslot's frame."""
        binding, page = self.locate(gfn)
        return ctypes.string_at(binding.shared_addr + (page - binding.first) * PAGE_SIZE, length)

    def _locate(self, gfn: int) -> tuple[Binding, int] | None:
        try:
            return self.locate(gfn)
        except GmemtraceError:
            return None

    # --- conversions -------------------------------------------------------
    def convert(self, gmem: GuestMemfd, first: int, count: int, *, to_private: bool) -> list[int]:
        """Request a conversion through each interface; returns the errnos (0 = converted)."""
        gpa = None
        for b in self.bindings:
            if b.gmem is gmem and b.first <= first and first + count <= b.first + b.count:
                gpa = (b.base_gfn + first - b.first) * PAGE_SIZE
        gfns = set(range(gpa // PAGE_SIZE, gpa // PAGE_SIZE + count)) if gpa is not None else set()
        changes = gfns - self.private_gfns if to_private else gfns & self.private_gfns
        attempts = self.vm.convert(gmem, first, count, to_private=to_private, gpa=gpa)
        ledger = self.truth[gmem.ino]
        for a in attempts:
            ledger.convert(first, count, to_private, a.interface, a.errno, self.pid)
            if a.errno == 0 and a.interface is Interface.VM_ATTRIBUTES:
                self._attributes_set(gfns, to_private)
                if changes:  # KVM unmaps the range from the guest, unless nothing changed
                    ledger.guest_unmap(first, count)
        return [a.errno for a in attempts]

    def convert_in_place(
        self, gmem: GuestMemfd, first: int, count: int, *, to_private: bool
    ) -> tuple[int, int | None]:
        """KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd: (0 or the errno, the page that
        blocked it)."""
        a = self.vm.convert_in_place(gmem, first, count, to_private=to_private)
        self.truth[gmem.ino].convert(
            first, count, to_private, a.interface, a.errno, self.pid, a.blocking_page
        )
        return a.errno, a.blocking_page

    def takes_attributes2(self, gmem: GuestMemfd) -> bool:
        """Whether the guest_memfd converts in place, asked by behaviour (a request with
        invalid flags: EINVAL if it does, ENOTTY if not), the request in the ledger too."""
        takes = kvm.takes_attributes2(gmem.fd)
        err = errno.EINVAL if takes else errno.ENOTTY
        self.truth[gmem.ino].convert(0, 1, False, Interface.ATTRIBUTES2, err, self.pid)
        return takes

    def hold(self, mapping: HostMapping, page: int) -> PageHold:
        """Keep a reference to one page, as I/O in flight does (release() it)."""
        held = PageHold(mapping.address(page))
        self.truth[mapping.gmem.ino].log("hold", page, 1, self.pid)
        return held

    def set_attributes(self, gpa: int, count: int, *, private: bool) -> int:
        """KVM_SET_MEMORY_ATTRIBUTES on guest frames no guest_memfd backs (recorded as a
        fact: no inode's ledger holds them); 0 or the errno."""
        err = self.vm.set_attributes(gpa, count * PAGE_SIZE, private=private)
        self.facts.setdefault("other_conversions", []).append(
            {"gpa": gpa, "count": count, "to": "private" if private else "shared", "errno": err}
        )
        if err == 0:
            self._attributes_set(set(range(gpa // PAGE_SIZE, gpa // PAGE_SIZE + count)), private)
        return err

    def _attributes_set(self, gfns: set[int], private: bool) -> None:
        if private:
            self.private_gfns |= gfns
        else:
            self.private_gfns -= gfns

    # --- the end -----------------------------------------------------------
    def close(self) -> None:
        """Drop every reference (vCPU, VM, mappings, fds): the kernel frees each inode's pages."""
        if self.vcpu is not None:
            self.vcpu.close()
        self.vm.close()
        for gmem in self.gmems:
            gmem.close()
        for ledger in self.truth.values():
            ledger.release(self.pid)
        self.gmems.clear()

    def ground_truth(self) -> dict[str, Any]:
        return {
            "format": "gmemtrace-ground-truth/1",
            "scenario": self.scenario,
            "pid": self.pid,
            "kernel": platform.release(),
            "clock": "CLOCK_MONOTONIC",
            "started_ns": self.started_ns,
            "ended_ns": time.monotonic_ns(),
            "facts": self.facts,
            "inodes": [ledger.to_json() for ledger in self.truth.values()],
        }

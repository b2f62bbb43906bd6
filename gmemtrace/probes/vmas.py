"""The collector's copy of the guest_memfd mappings behind the kernel's LPM trie.

The kernel inserts a mapping's blocks at mmap/mremap exit (so no fault is
missed); removing them on munmap, which may cut a mapping in pieces, is done
here. Both sides decompose a range the same canonical way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

PAGE_SHIFT = 12


ADDR_BITS = 48


def blocks(start: int, end: int) -> Iterator[tuple[int, int]]:
    """Aligned power-of-two blocks (address, log2 size) covering the page-aligned [start, end).

    The same two passes as map_range() in bpf/gmem_tracepoints.c, so both sides
    write and delete identical keys.
    """
    addr = start
    for bits in range(PAGE_SHIFT, ADDR_BITS):
        if addr & (1 << bits) and addr + (1 << bits) <= end:
            yield addr, bits
            addr += 1 << bits
    for bits in range(ADDR_BITS - 1, PAGE_SHIFT - 1, -1):
        if addr + (1 << bits) <= end:
            yield addr, bits
            addr += 1 << bits


@dataclass(frozen=True)
class Vma:
    start: int
    end: int
    ino: int
    pgoff: int  # page index of `start` in the guest_memfd

    def page_at(self, addr: int) -> int:
        return self.pgoff + ((addr - self.start) >> PAGE_SHIFT)


# (asid, address, log2 size, vma or None to delete) -> None
BlockWriter = Callable[[int, int, int, "Vma | None"], None]


class VmaTable:
    """guest_memfd mappings per address space id, mirrored into the kernel through `write`."""

    def __init__(self, write: BlockWriter) -> None:
        self._write = write
        self._vmas: dict[int, list[Vma]] = {}

    def add(self, asid: int, vma: Vma) -> None:
        """A new mapping. Its blocks are (re)written even when the kernel inserted them
        already: removing an overlapped older mapping may have deleted shared blocks."""
        self.remove(asid, vma.start, vma.end)
        self._vmas.setdefault(asid, []).append(vma)
        for addr, bits in blocks(vma.start, vma.end):
            self._write(asid, addr, bits, vma)

    def remove(self, asid: int, start: int, end: int) -> None:
        """Unmap [start, end): drop overlapping mappings, keep the pieces outside."""
        kept: list[Vma] = []
        for vma in self._vmas.get(asid, []):
            if vma.end <= start or vma.start >= end:
                kept.append(vma)
                continue
            for addr, bits in blocks(vma.start, vma.end):
                self._write(asid, addr, bits, None)
            for lo, hi in ((vma.start, min(start, vma.end)), (max(end, vma.start), vma.end)):
                if lo < hi:
                    piece = Vma(lo, hi, vma.ino, vma.page_at(lo))
                    kept.append(piece)
                    for addr, bits in blocks(lo, hi):
                        self._write(asid, addr, bits, piece)
        self._vmas[asid] = kept

    def lookup(self, asid: int, addr: int) -> Vma | None:
        for vma in self._vmas.get(asid, []):
            if vma.start <= addr < vma.end:
                return vma
        return None

    def all(self) -> dict[int, list[Vma]]:
        return {asid: list(vmas) for asid, vmas in self._vmas.items() if vmas}

"""The guest_memfd mapping trie's keys: a page range as aligned power-of-two blocks.

The kernel maintains the trie itself (bpf/gmem_tracepoints.c inserts at
mmap/mremap and cuts at munmap, so that no fault races a change); user space
only adds the mappings that existed before gmemtrace attached, and must write
exactly the keys the kernel would.
"""

from __future__ import annotations

from collections.abc import Iterator

PAGE_SHIFT = 12
ADDR_BITS = 48


def blocks(start: int, end: int) -> Iterator[tuple[int, int]]:
    """Aligned power-of-two blocks (address, log2 size) covering the page-aligned [start, end).

    The same two passes as write_range() in bpf/gmem_tracepoints.c.
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

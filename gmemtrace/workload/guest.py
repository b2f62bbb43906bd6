"""The guest program: 16-bit real-mode code that writes a marker into chosen pages, then halts."""

from __future__ import annotations

import struct

from gmemtrace.kernel.uapi import PAGE_SIZE

# Real mode reaches 1 MiB: page p is segment p * 0x100, offset 0.
MAX_GUEST_PAGE = 0xFF


def marker(page: int) -> int:
    """The 16-bit value the guest writes at offset 0 of guest page `page`."""
    return 0x6700 | (page & 0xFF)


def touch_pages(pages: list[int]) -> bytes:
    """Machine code writing `marker(p)` at the start of each guest page `p`, then `hlt`."""
    code = bytearray()
    for page in pages:
        if not 0 <= page <= MAX_GUEST_PAGE:
            raise ValueError(f"guest page {page} is beyond real mode's reach")
        segment = page * PAGE_SIZE >> 4
        code += b"\xb8" + struct.pack("<H", segment)  # mov ax, segment
        code += b"\x8e\xd8"  # mov ds, ax
        code += b"\xc7\x06\x00\x00" + struct.pack("<H", marker(page))  # mov word [0], marker
    code += b"\xf4"  # hlt
    return bytes(code)

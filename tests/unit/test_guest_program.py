"""The real-mode guest program writes each page's marker and halts."""

import struct

import pytest

from gmemtrace.workload import guest


def test_program_sets_segment_and_writes_marker_per_page() -> None:
    code = guest.touch_pages([3, 0x10])
    per_page = 3 + 2 + 6
    assert len(code) == 2 * per_page + 1
    assert code[-1] == 0xF4  # hlt
    for i, page in enumerate((3, 0x10)):
        chunk = code[i * per_page : (i + 1) * per_page]
        assert chunk[0] == 0xB8 and struct.unpack_from("<H", chunk, 1)[0] == page * 0x100
        assert chunk[3:5] == b"\x8e\xd8"
        assert chunk[5:9] == b"\xc7\x06\x00\x00"
        assert struct.unpack_from("<H", chunk, 9)[0] == guest.marker(page)


def test_markers_differ_between_pages() -> None:
    assert len({guest.marker(p) for p in range(guest.MAX_GUEST_PAGE + 1)}) == 256


def test_pages_beyond_real_mode_are_refused() -> None:
    with pytest.raises(ValueError, match="beyond real mode"):
        guest.touch_pages([guest.MAX_GUEST_PAGE + 1])

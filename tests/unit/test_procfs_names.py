"""guest_memfds found in /proc by their name, on every kernel: an anonymous inode (6.x), or a
file of guest_memfd's own file system (the in-place conversion series, lab kernel 7.2)."""

from __future__ import annotations

from pathlib import Path

from gmemtrace.kernel.procfs import GmemMapping, gmem_mappings, is_gmem_name

MAPS = """\
55d0c0a00000-55d0c0a21000 r--p 00000000 fd:01 1234   /usr/bin/python3.11
7f1b64a00000-7f1b64e00000 rw-s 00000000 00:0f 2050   anon_inode:[kvm-gmem]
7fd4f87a3000-7fd4f8ba3000 rw-s 00004000 00:11 1634                       /[kvm-gmem] (deleted)
7fd4f8ba3000-7fd4f8ba4000 rw-s 00000000 00:05 77     /memfd:not-gmem (deleted)
7ffd1c9e4000-7ffd1ca05000 rw-p 00000000 00:00 0      [stack]
"""


def test_both_names_of_a_guest_memfd_and_no_other(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "maps").write_text(MAPS)
    assert gmem_mappings(42, proc=tmp_path) == [
        GmemMapping(0x7F1B64A00000, 0x7F1B64E00000, 2050, 0),
        GmemMapping(0x7FD4F87A3000, 0x7FD4F8BA3000, 1634, 4),
    ]
    assert is_gmem_name("/[kvm-gmem] (deleted)") and is_gmem_name("anon_inode:[kvm-gmem]")
    assert not is_gmem_name("/memfd:[kvm-gmem] (deleted)")

"""The BTF reader finds functions and member offsets, through anonymous members and typedefs."""

import struct
from pathlib import Path

import pytest

from gmemtrace.errors import GmemtraceError
from gmemtrace.kernel.btf import (
    KIND_FUNC,
    KIND_INT,
    KIND_PTR,
    KIND_STRUCT,
    KIND_TYPEDEF,
    KIND_UNION,
    Btf,
    BtfError,
)
from gmemtrace.kernel.offsets import MAX_WINDOW_WORDS, window_defines


class BtfBuilder:
    """Writes a minimal BTF blob: enough kinds to exercise the reader."""

    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.count = 0

    def name(self, text: str) -> int:
        if not text:
            return 0
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def _add(
        self,
        name: str,
        kind: int,
        vlen: int,
        size_or_type: int,
        tail: bytes = b"",
        kind_flag: int = 0,
    ) -> int:
        info = (kind_flag << 31) | (kind << 24) | vlen
        self.types += struct.pack("<III", self.name(name), info, size_or_type) + tail
        self.count += 1
        return self.count

    def int_(self, name: str, size: int) -> int:
        return self._add(name, KIND_INT, 0, size, struct.pack("<I", size * 8))

    def ptr(self, target: int) -> int:
        return self._add("", KIND_PTR, 0, target)

    def typedef(self, name: str, target: int) -> int:
        return self._add(name, KIND_TYPEDEF, 0, target)

    def func(self, name: str) -> int:
        return self._add(name, KIND_FUNC, 0, 0)

    def record(
        self,
        name: str,
        size: int,
        members: list[tuple[str, int, int]],
        union: bool = False,
        bitfields: bool = False,
    ) -> int:
        tail = b"".join(struct.pack("<III", self.name(n), t, off) for n, t, off in members)
        kind = KIND_UNION if union else KIND_STRUCT
        return self._add(name, kind, len(members), size, tail, int(bitfields))

    def blob(self) -> bytes:
        header = struct.pack(
            "<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings)
        )
        return header + bytes(self.types) + bytes(self.strings)


@pytest.fixture
def btf() -> Btf:
    b = BtfBuilder()
    u64 = b.int_("u64", 8)
    u32 = b.int_("u32", 4)
    pgoff_t = b.typedef("pgoff_t", u64)
    inner = b.record("", 16, [("file", b.ptr(u64), 0), ("pgoff", pgoff_t, 64)])
    anon_union = b.record("", 8, [("a", u64, 0), ("b", u32, 0)], union=True)
    b.record(
        "slot",
        48,
        [("base_gfn", u64, 0), ("gmem", inner, 64), ("", anon_union, 192), ("id", u32, 256)],
    )
    b.record("flags", 4, [("lo", u32, 3 | (5 << 24))], bitfields=True)
    b.func("kvm_gmem_get_pfn")
    b.func("__kvm_gmem_invalidate_begin")
    b.func("vfs_read")
    return Btf(b.blob())


def test_member_offsets_nested_and_anonymous(btf: Btf) -> None:
    assert btf.member("slot", "base_gfn").offset_bytes == 0
    assert btf.member("slot", "gmem.pgoff").offset_bytes == 16
    assert btf.member("slot", "b").offset_bytes == 24  # inside an anonymous union
    assert btf.member("slot", "id").offset_bytes == 32
    assert btf.struct_size("slot") == 48


def test_bitfield_members_report_bit_size(btf: Btf) -> None:
    member = btf.member("flags", "lo")
    assert member.bitfield_bits == 5
    assert member.offset_bytes == 0


def test_functions_by_substring(btf: Btf) -> None:
    assert btf.functions("kvm_gmem") == ["__kvm_gmem_invalidate_begin", "kvm_gmem_get_pfn"]
    assert btf.has_function("vfs_read")
    assert not btf.has_function("kvm_gmem_fault")


def test_missing_struct_and_member_are_clear_errors(btf: Btf) -> None:
    with pytest.raises(BtfError, match="struct nope is not in"):
        btf.member("nope", "x")
    with pytest.raises(BtfError, match=r"has no member gmem\.nope"):
        btf.member("slot", "gmem.nope")


def test_bad_magic_is_rejected() -> None:
    with pytest.raises(BtfError, match="bad magic"):
        Btf(b"\0" * 64)


def test_read_windows_span_their_members_and_refuse_odd_layouts() -> None:
    offsets = {
        "OFF_FOLIO_FLAGS": 0,
        "OFF_FOLIO_MAPPING": 24,
        "OFF_FOLIO_INDEX": 32,
        "OFF_INODE_I_SB": 40,
        "OFF_INODE_I_INO": 64,
    }
    assert window_defines(offsets) == {
        "FOLIO_WIN_LO": 0,
        "FOLIO_WIN_WORDS": 5,
        "INODE_WIN_LO": 40,
        "INODE_WIN_WORDS": 4,
    }
    with pytest.raises(GmemtraceError, match="unexpected struct layout"):
        window_defines({**offsets, "OFF_INODE_I_INO": 40 + 8 * MAX_WINDOW_WORDS})
    with pytest.raises(GmemtraceError, match="OFF_FOLIO_INDEX at 0, 24, 36"):
        window_defines({**offsets, "OFF_FOLIO_INDEX": 36})


def test_module_split_btf_continues_the_base_ids_and_strings(tmp_path: Path) -> None:
    """A module's BTF (/sys/kernel/btf/kvm) numbers its types after vmlinux's and refers
    to vmlinux's types and strings by their own ids and offsets."""
    base = BtfBuilder()
    u64 = base.int_("u64", 8)
    base.func("vfs_read")
    split = BtfBuilder()
    split.strings = bytearray()  # split string offsets start at the base's length
    split_offset = len(base.strings)
    real_name = split.name

    def name(text: str) -> int:
        return real_name(text) + split_offset if text else 0

    split.name = name  # type: ignore[method-assign]
    split.count = base.count  # ids continue the base's
    split.record("kvm_memory_slot", 16, [("base_gfn", u64, 0), ("npages", u64, 64)])
    split.func("kvm_gmem_get_pfn")
    folder = tmp_path
    (folder / "vmlinux").write_bytes(base.blob())
    (folder / "kvm").write_bytes(split.blob())
    btf = Btf.load(folder / "vmlinux", modules=("kvm",))
    assert btf.module == "kvm"
    assert btf.member("kvm_memory_slot", "npages").offset_bytes == 8
    assert btf.function_module("kvm_gmem_get_pfn") == "kvm"
    assert btf.function_module("vfs_read") == "vmlinux"
    assert Btf.load(folder / "vmlinux", modules=("absent",)).module == ""

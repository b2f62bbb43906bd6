"""The running kernel's BTF: function names and struct member offsets.

A small reader of the BTF format (Documentation/bpf/btf.rst): it indexes the
type section once and answers the two questions gmemtrace asks, which
functions exist and where a member sits inside a struct. Where KVM is a module,
its types and functions are in the module's split BTF (/sys/kernel/btf/kvm),
whose type ids and strings continue vmlinux's: `Btf.load()` reads both.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from gmemtrace.errors import GmemtraceError

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
# Modules whose BTF holds what the programs read: the guest_memfd functions and
# KVM's structs (kvm_memory_slot, kvm_vcpu) live in kvm.ko where KVM is a module.
MODULES = ("kvm",)
BTF_MAGIC = 0xEB9F

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 7, 8, 9, 10, 11
KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_FLOAT = 12, 13, 14, 15, 16
KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 17, 18, 19

# Bytes that follow the 12-byte common header: (fixed, per vlen item).
_TRAILER = {
    KIND_INT: (4, 0),
    KIND_ARRAY: (12, 0),
    KIND_STRUCT: (0, 12),
    KIND_UNION: (0, 12),
    KIND_ENUM: (0, 8),
    KIND_FUNC_PROTO: (0, 8),
    KIND_VAR: (4, 0),
    KIND_DATASEC: (0, 12),
    KIND_DECL_TAG: (4, 0),
    KIND_ENUM64: (0, 12),
}
_MODIFIERS = {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG}


class BtfError(GmemtraceError):
    """BTF missing, unreadable or without the asked-for type."""


@dataclass(frozen=True)
class Member:
    name: str
    offset_bytes: int
    bitfield_bits: int


class Btf:
    """An index over one BTF blob (vmlinux by default)."""

    def __init__(self, data: bytes, base: Btf | None = None) -> None:
        """`base`: the BTF that a module's split BTF continues (type ids and strings)."""
        if len(data) < 24:
            raise BtfError("BTF blob too short")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BtfError("not a BTF blob (bad magic)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        base_data: bytes = base._data if base else b""
        shift = len(base_data)  # this blob follows the base's in _data
        self._data: bytes = base_data + data
        self._types = shift + hdr_len + type_off
        self._types_end = self._types + type_len
        # String offsets below the base's string length are the base's (split BTF).
        self._base_strings: int = base._strings if base else 0
        self._base_str_len: int = base._str_len if base else 0
        self._strings: int = shift + hdr_len + str_off
        self._str_len: int = self._base_str_len + str_len
        # type id -> byte offset of its header; id 0 is void; a split BTF continues its base.
        self._offsets: list[int] = list(base._offsets) if base else [0]
        self._first_own_id = len(self._offsets)
        self.module = ""  # the module whose split BTF this is ("": vmlinux)
        self._index()

    @classmethod
    def load(cls, path: Path = VMLINUX_BTF, modules: tuple[str, ...] = MODULES) -> Btf:
        """The kernel's BTF, continued by the first of `modules` loaded with BTF of its own."""
        try:
            btf = cls(path.read_bytes())
        except OSError as err:
            raise BtfError(f"cannot read kernel BTF at {path}: {err.strerror}") from None
        for name in modules:
            with contextlib.suppress(OSError):  # built in, or not loaded: vmlinux has it
                split = cls(path.with_name(name).read_bytes(), base=btf)
                split.module = name
                return split
        return btf

    def _index(self) -> None:
        data, pos, end = self._data, self._types, self._types_end
        unpack = struct.Struct("<III").unpack_from
        offsets = self._offsets
        while pos < end:
            offsets.append(pos)
            _, info, _ = unpack(data, pos)
            fixed, per_item = _TRAILER.get((info >> 24) & 0x1F, (0, 0))
            pos += 12 + fixed + per_item * (info & 0xFFFF)

    def _string_at(self, name_off: int) -> int:
        if name_off < self._base_str_len:
            return self._base_strings + name_off
        return self._strings + name_off - self._base_str_len

    def _name(self, name_off: int) -> str:
        start = self._string_at(name_off)
        return self._data[start : self._data.index(b"\0", start)].decode()

    def _header(self, type_id: int) -> tuple[int, int, int, int]:
        """(name_off, kind, vlen, size_or_type) of a type."""
        name_off, info, size_or_type = struct.unpack_from(
            "<III", self._data, self._offsets[type_id]
        )
        return name_off, (info >> 24) & 0x1F, info & 0xFFFF, size_or_type

    @cached_property
    def _by_kind_and_name(self) -> dict[tuple[int, str], int]:
        index: dict[tuple[int, str], int] = {}
        for type_id in range(1, len(self._offsets)):
            name_off, kind, _, _ = self._header(type_id)
            if name_off and kind in (KIND_STRUCT, KIND_UNION, KIND_FUNC):
                index.setdefault((kind, self._name(name_off)), type_id)
        return index

    @property
    def type_count(self) -> int:
        return len(self._offsets) - 1

    def functions(self, containing: str = "") -> list[str]:
        """Names of the BTF FUNC entries that contain `containing`, sorted."""
        return sorted(
            name
            for kind, name in self._by_kind_and_name
            if kind == KIND_FUNC and containing in name
        )

    def has_function(self, name: str) -> bool:
        return (KIND_FUNC, name) in self._by_kind_and_name

    def function_module(self, name: str) -> str:
        """Where function `name` is: "vmlinux", or the module whose split BTF has it."""
        type_id = self._by_kind_and_name[(KIND_FUNC, name)]
        return self.module if self.module and type_id >= self._first_own_id else "vmlinux"

    def _members(self, type_id: int) -> list[tuple[str, int, int, int]]:
        """(name, member type id, bit offset, bitfield size) of a struct or union."""
        _, _, vlen, _ = self._header(type_id)
        kind_flag = struct.unpack_from("<I", self._data, self._offsets[type_id] + 4)[0] >> 31
        out = []
        pos = self._offsets[type_id] + 12
        for _ in range(vlen):
            name_off, member_type, offset = struct.unpack_from("<III", self._data, pos)
            bits, bitfield = (offset & 0xFFFFFF, offset >> 24) if kind_flag else (offset, 0)
            out.append((self._name(name_off) if name_off else "", member_type, bits, bitfield))
            pos += 12
        return out

    def _resolve(self, type_id: int) -> int:
        """Skip typedefs and qualifiers."""
        while type_id:
            _, kind, _, target = self._header(type_id)
            if kind not in _MODIFIERS:
                break
            type_id = target
        return type_id

    def enumerator(self, name: str) -> int:
        """The value of enumerator `name` (e.g. PG_head) in any enum of the BTF."""
        wanted = name.encode()
        for type_id in range(1, len(self._offsets)):
            _, kind, vlen, _ = self._header(type_id)
            if kind != KIND_ENUM:
                continue
            pos = self._offsets[type_id] + 12
            for _ in range(vlen):
                name_off, value = struct.unpack_from("<Ii", self._data, pos)
                start = self._string_at(name_off)
                if self._data[start : start + len(wanted) + 1] == wanted + b"\0":
                    return int(value)
                pos += 8
        raise BtfError(f"enumerator {name} is not in the kernel's BTF")

    def struct_size(self, name: str) -> int:
        return self._header(self._struct_id(name))[3]

    def _struct_id(self, name: str) -> int:
        for kind in (KIND_STRUCT, KIND_UNION):
            if (kind, name) in self._by_kind_and_name:
                return self._by_kind_and_name[(kind, name)]
        raise BtfError(f"struct {name} is not in the kernel's BTF")

    def member(self, struct_name: str, path: str) -> Member:
        """Byte offset of `path` (dotted, e.g. "gmem.pgoff") inside struct `struct_name`.

        Members of anonymous structs and unions are found as if they were direct
        members, as C lets one name them.
        """
        type_id, offset_bits, bitfield = self._struct_id(struct_name), 0, 0
        for part in path.split("."):
            found = self._find_member(type_id, part)
            if found is None:
                raise BtfError(f"struct {struct_name} has no member {path}")
            type_id, bits, bitfield = found
            offset_bits += bits
        return Member(path, offset_bits // 8, bitfield)

    def _find_member(self, type_id: int, name: str) -> tuple[int, int, int] | None:
        for member_name, member_type, bits, bitfield in self._members(self._resolve(type_id)):
            if member_name == name:
                return self._resolve(member_type), bits, bitfield
            if not member_name:  # anonymous struct or union: look inside
                inner = self._find_member(member_type, name)
                if inner is not None:
                    return inner[0], bits + inner[1], inner[2]
        return None

"""A BPF program loaded by another process, held by its file descriptors: the maps read and
written through the bpf() system call, with bcc's table interface (Key, Leaf, [key]).

The loader child (gmemtrace/probes/loader.py) compiles with bcc and hands over the
descriptors; this process never loads bcc and its LLVM (about 150 MB resident), and the
probes stay attached exactly as long as it holds them: when it exits, by any path, the
kernel closes them and detaches every probe.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gmemtrace.kernel import bpfsys

BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
PER_CPU = (BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH)

# The C types bcc names in its table descriptions (what gmemtrace's maps use, and kin).
C_TYPES: dict[str, Any] = {
    "char": ctypes.c_char,
    "signed char": ctypes.c_byte,
    "unsigned char": ctypes.c_ubyte,
    "short": ctypes.c_short,
    "unsigned short": ctypes.c_ushort,
    "int": ctypes.c_int,
    "unsigned int": ctypes.c_uint,
    "long": ctypes.c_long,
    "unsigned long": ctypes.c_ulong,
    "long long": ctypes.c_longlong,
    "unsigned long long": ctypes.c_ulonglong,
    "_Bool": ctypes.c_bool,
}


def decode_type(desc: Any) -> Any:
    """A ctypes type from bcc's JSON description of a map's key or value: a C type name,
    or [name, [[field, type] | [field, type, [length]], ...], "struct" | "struct_packed"
    | "union"]."""
    if isinstance(desc, str):
        if desc not in C_TYPES:
            raise ValueError(f"map type {desc!r} is not one gmemtrace reads")
        return C_TYPES[desc]
    name, members, *rest = desc
    kind = rest[0] if rest else "struct"
    fields: list[tuple[str, Any]] = []
    for member in members:
        ctype = decode_type(member[1])
        if len(member) == 3:
            if not isinstance(member[2], list):
                raise ValueError(f"map type {name}: bit field {member[0]} is not supported")
            for length in reversed(member[2]):  # u64 x[2][8]: [2, 8]
                ctype = ctype * length
        fields.append((member[0], ctype))
    base = ctypes.Union if kind == "union" else ctypes.Structure
    attrs: dict[str, Any] = {"_fields_": fields}
    if kind == "struct_packed":
        attrs["_pack_"] = 1  # bcc writes out the padding as fields
    return type(str(name), (base,), attrs)


def _simple(ctype: Any) -> bool:
    return ctype in C_TYPES.values()


class Map:
    """One map, by its file descriptor (bcc's table interface, what gmemtrace uses of it)."""

    def __init__(self, fd: int, key_desc: Any, leaf_desc: Any, ncpus: int) -> None:
        self.map_fd = fd
        self.Key = decode_type(key_desc)
        self.Leaf = decode_type(leaf_desc)
        info = bpfsys.map_info(fd)
        self.per_cpu = info.type in PER_CPU
        if info.key_size and ctypes.sizeof(self.Key) != info.key_size:  # a ring buffer: 0
            raise ValueError(f"map {info.name!r}: key is {info.key_size} bytes, not as described")
        self._stride = (info.value_size + 7) & ~7  # per-CPU values are 8-byte aligned
        self._values = ncpus if self.per_cpu else 1

    def _buffer(self) -> ctypes.Array[ctypes.c_char]:
        return ctypes.create_string_buffer(self._stride * self._values)

    def __getitem__(self, key: Any) -> Any:
        """The value (a per-CPU map: a list of them, one per possible CPU, in order)."""
        raw = self._buffer()
        if not bpfsys.map_lookup(self.map_fd, self._key(key), raw):
            raise KeyError(key)
        values = [self.Leaf.from_buffer_copy(raw, i * self._stride) for i in range(self._values)]
        if _simple(self.Leaf):
            values = [v.value for v in values]
        return values if self.per_cpu else values[0]

    def __setitem__(self, key: Any, leaf: Any) -> None:
        if self.per_cpu:
            raise TypeError("writing a per-CPU map is not supported")
        raw = self._buffer()
        ctypes.memmove(raw, ctypes.addressof(leaf), ctypes.sizeof(self.Leaf))
        bpfsys.map_update(self.map_fd, self._key(key), raw)

    def _key(self, key: Any) -> Any:
        """A key as the map stores it: a ctypes value of its size (an int is made one)."""
        if isinstance(key, int):
            return self.Key(key)
        if ctypes.sizeof(key) != ctypes.sizeof(self.Key):
            raise TypeError(f"key of {ctypes.sizeof(key)} bytes for a map of {self.Key.__name__}")
        return key

    def keys(self) -> Iterator[Any]:
        key, following = None, self.Key()
        while bpfsys.map_next_key(self.map_fd, key, following):
            yield following
            key, following = following, self.Key()

    def read_all(self, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Every element at once, in batches of `chunk` (BPF_MAP_LOOKUP_BATCH): (keys,
        values) as numpy arrays of the map's types; a per-CPU map's values one row per
        element, one column per possible CPU."""
        key_size, value_size = ctypes.sizeof(self.Key), self._stride * self._values
        if self.per_cpu and ctypes.sizeof(self.Leaf) != self._stride:
            raise ValueError("per-CPU values not a multiple of 8 bytes are not read in batches")
        keys, values = bytearray(), bytearray()
        token, following = None, ctypes.create_string_buffer(8)
        while True:
            kbuf = ctypes.create_string_buffer(key_size * chunk)
            vbuf = ctypes.create_string_buffer(value_size * chunk)
            n, more = bpfsys.map_lookup_batch(self.map_fd, token, following, kbuf, vbuf, chunk)
            keys += kbuf.raw[: n * key_size]
            values += vbuf.raw[: n * value_size]
            if not more:
                break
            token = ctypes.create_string_buffer(following.raw, 8)
        key_array = np.frombuffer(bytes(keys), dtype=np.dtype(self.Key))
        value_array = np.frombuffer(bytes(values), dtype=np.dtype(self.Leaf))
        if self.per_cpu:
            value_array = value_array.reshape(-1, self._values)
        return key_array, value_array

    def items(self) -> Iterator[tuple[Any, Any]]:
        for key in list(self.keys()):
            try:
                yield key, self[key]
            except KeyError:
                continue  # deleted since


@dataclass
class HeldProgram:
    """A loaded, attached program held by descriptors: maps by name, and the attachments
    (perf events, links) that keep it attached."""

    maps: dict[str, Map]
    attachments: list[int]
    _fds: list[int] = field(default_factory=list)

    @classmethod
    def from_handover(cls, meta: dict[str, Any], fds: list[int], ncpus: int) -> HeldProgram:
        """Rebuild from the loader's message: metadata naming the index of each descriptor."""
        try:
            maps = {
                name: Map(fds[m["fd"]], json.loads(m["key"]), json.loads(m["leaf"]), ncpus)
                for name, m in meta["maps"].items()
            }
            attachments = [fds[i] for i in meta["attachments"]]
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return cls(maps, attachments, list(fds))

    def __getitem__(self, name: bytes) -> Map:
        return self.maps[name.decode()]

    def cleanup(self) -> None:
        """Detach everything: close every descriptor (the attachments first)."""
        for fd in [*self.attachments, *(f for f in self._fds if f not in self.attachments)]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        self.attachments.clear()

"""The bpf() system call, for the maps of a program loaded by another process
(gmemtrace/probes/loader.py): no bcc needed."""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Any  # ctypes objects: addressof() takes any of them

SYS_BPF = {"x86_64": 321, "aarch64": 280}

_libc = ctypes.CDLL(None, use_errno=True)

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_MAP_LOOKUP_BATCH = 24
BPF_ANY = 0


class _MapElem(ctypes.Structure):
    """union bpf_attr, as the BPF_MAP_*_ELEM commands read it."""

    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),  # next_key for BPF_MAP_GET_NEXT_KEY
        ("flags", ctypes.c_uint64),
    ]


class _MapBatch(ctypes.Structure):
    """union bpf_attr, as the BPF_MAP_*_BATCH commands read it."""

    _fields_ = [
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _InfoByFd(ctypes.Structure):
    _fields_ = [
        ("bpf_fd", ctypes.c_uint32),
        ("info_len", ctypes.c_uint32),
        ("info", ctypes.c_uint64),
    ]


class MapInfo(ctypes.Structure):
    """The start of struct bpf_map_info (the kernel fills what fits)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
    ]


def _bpf(command: int, attr: ctypes.Structure) -> int:
    number = SYS_BPF.get(platform.machine())
    if number is None:
        raise OSError(0, f"bpf() syscall number unknown on {platform.machine()}")
    result = int(_libc.syscall(number, command, ctypes.byref(attr), ctypes.sizeof(attr)))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    attr = _InfoByFd(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return info


def map_lookup(fd: int, key: Any, value: Any) -> bool:
    """Fill `value` with the element at `key`; False when there is none."""
    attr = _MapElem(map_fd=fd, key=ctypes.addressof(key), value=ctypes.addressof(value))
    try:
        _bpf(BPF_MAP_LOOKUP_ELEM, attr)
    except FileNotFoundError:
        return False
    return True


def map_update(fd: int, key: Any, value: Any) -> None:
    attr = _MapElem(
        map_fd=fd, key=ctypes.addressof(key), value=ctypes.addressof(value), flags=BPF_ANY
    )
    _bpf(BPF_MAP_UPDATE_ELEM, attr)


def map_next_key(fd: int, key: Any, next_key: Any) -> bool:
    """The key after `key` (None: the first) into `next_key`; False at the end."""
    attr = _MapElem(map_fd=fd, key=ctypes.addressof(key) if key is not None else 0)
    attr.value = ctypes.addressof(next_key)
    try:
        _bpf(BPF_MAP_GET_NEXT_KEY, attr)
    except FileNotFoundError:
        return False
    return True


def map_lookup_batch(
    fd: int, token: Any | None, following: Any, keys: Any, values: Any, count: int
) -> tuple[int, bool]:
    """Up to `count` elements after `token` (None: from the start) into `keys` and
    `values`, and the token to go on from into `following`: (how many, whether more
    follow). Since Linux 5.6."""
    attr = _MapBatch(map_fd=fd, count=count, keys=ctypes.addressof(keys))
    attr.values = ctypes.addressof(values)
    attr.in_batch = ctypes.addressof(token) if token is not None else 0
    attr.out_batch = ctypes.addressof(following)
    try:
        _bpf(BPF_MAP_LOOKUP_BATCH, attr)
    except FileNotFoundError:
        return int(attr.count), False  # the last batch (ENOENT: nothing after it)
    return int(attr.count), True

"""The bpf() system call, for what bcc does not wrap (running a program on a CPU) and for the
maps of a program loaded by another process (gmemtrace/probes/loader.py): no bcc needed."""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Any  # ctypes objects: addressof() takes any of them

BPF_PROG_TEST_RUN = 10
BPF_F_TEST_RUN_ON_CPU = 1 << 0
SYS_BPF = {"x86_64": 321, "aarch64": 280}

_libc = ctypes.CDLL(None, use_errno=True)


class _TestRun(ctypes.Structure):
    """union bpf_attr, as BPF_PROG_TEST_RUN reads it (include/uapi/linux/bpf.h)."""

    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


def run_on_cpu(prog_fd: int, cpu: int) -> None:
    """Run a loaded raw-tracepoint program once on `cpu` (an IPI there, since Linux 5.10).
    Raises OSError: ENXIO for an offline CPU, EINVAL where the kernel cannot."""
    _bpf(BPF_PROG_TEST_RUN, _TestRun(prog_fd=prog_fd, flags=BPF_F_TEST_RUN_ON_CPU, cpu=cpu))


BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_GET_INFO_BY_FD = 15
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

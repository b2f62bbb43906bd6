"""Thin ctypes calls over the KVM ioctls (the uAPI they speak is in uapi.py, re-exported
here so that code issuing ioctls reads kvm.KVM_RUN beside kvm.ioctl)."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

from gmemtrace.errors import GmemtraceError
from gmemtrace.kernel.uapi import *  # noqa: F403
from gmemtrace.kernel.uapi import KVM_CHECK_EXTENSION, Capability

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int


class KvmError(GmemtraceError):
    """A KVM ioctl failed; `errno` says how."""

    def __init__(self, what: str, errno: int) -> None:
        super().__init__(f"{what}: {os.strerror(errno)} (errno {errno})")
        self.errno = errno


def ioctl(fd: int, request: int, arg: ctypes.Structure | int | None = None) -> int:
    """Issue an ioctl and return its value; raise KvmError with the errno on failure."""
    if isinstance(arg, ctypes.Structure):
        ptr: ctypes.c_void_p | int | None = ctypes.cast(ctypes.byref(arg), ctypes.c_void_p)
    else:
        ptr = arg
    ret = _libc.ioctl(fd, request, ptr)
    if ret < 0:
        raise KvmError(f"ioctl {request:#x}", ctypes.get_errno())
    return int(ret)


def try_ioctl(fd: int, request: int, arg: ctypes.Structure | int | None = None) -> int:
    """Issue an ioctl and return 0 on success or the positive errno on failure."""
    try:
        ioctl(fd, request, arg)
    except KvmError as err:
        return err.errno
    return 0


def check_extension(fd: int, cap: Capability) -> int:
    """KVM_CHECK_EXTENSION on a /dev/kvm or VM fd; unknown capabilities read 0."""
    try:
        return ioctl(fd, KVM_CHECK_EXTENSION, cap.number)
    except KvmError:
        return 0


INVALID_ATTRIBUTES2_FLAGS = 1 << 63  # no revision of KVM_SET_MEMORY_ATTRIBUTES2 defines it


def takes_attributes2(gmem_fd: int) -> bool:
    """Whether this guest_memfd converts in place (KVM_SET_MEMORY_ATTRIBUTES2 on it), asked
    by behaviour: it answers invalid flags with EINVAL, a kernel without (or with in-place
    conversion off) with ENOTTY. The capability's number changed between revisions."""
    bad = MemoryAttributes2(offset=0, size=4096, flags=INVALID_ATTRIBUTES2_FLAGS)  # noqa: F405
    return try_ioctl(gmem_fd, KVM_SET_MEMORY_ATTRIBUTES2, bad) == errno.EINVAL  # noqa: F405

"""The bpf() system call, for the one command bcc does not wrap: running a program on a CPU."""

from __future__ import annotations

import ctypes
import os
import platform

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
    number = SYS_BPF.get(platform.machine())
    if number is None:
        raise OSError(0, f"bpf() syscall number unknown on {platform.machine()}")
    attr = _TestRun(prog_fd=prog_fd, flags=BPF_F_TEST_RUN_ON_CPU, cpu=cpu)
    if _libc.syscall(number, BPF_PROG_TEST_RUN, ctypes.byref(attr), ctypes.sizeof(attr)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))

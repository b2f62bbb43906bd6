"""Kernel tests run wherever the machine allows; elsewhere they skip, naming what is missing.

Under CI=true a missing capability fails the test instead: CI runs on machines
that have real KVM and BPF, and a skipped kernel test there is a broken setup.
"""

from __future__ import annotations

import os
from functools import cache

import pytest


@cache
def missing_kvm() -> str | None:
    if os.geteuid() != 0:
        return f"not root (euid {os.geteuid()})"
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not readable and writable"
    return None


@cache
def missing_bpf() -> str | None:
    if reason := missing_kvm():
        return reason
    from gmemtrace.doctor import Host, diagnose

    diagnosis = diagnose(Host(load_bpf=True))
    return "; ".join(diagnosis.blockers) or None


def _require(reason: str | None) -> None:
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"kernel test cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def kvm_ready() -> None:
    """Root and a usable /dev/kvm."""
    _require(missing_kvm())


@pytest.fixture
def bpf_ready(kvm_ready: None) -> None:
    """Everything doctor requires for tracing: privileges, bcc, headers, tracefs, tracepoints."""
    _require(missing_bpf())


def bpf_program_ids() -> set[int]:
    import json
    import subprocess

    out = subprocess.run(
        ["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True
    ).stdout
    return {int(p["id"]) for p in json.loads(out)}


def programs_left(before: set[int], timeout_s: float = 5.0) -> set[int]:
    """BPF programs loaded since `before` that are still there after `timeout_s`: the kernel
    frees a program whose raw-tracepoint link was closed a moment later (RCU), not at once."""
    import time

    deadline = time.monotonic() + timeout_s
    while (left := bpf_program_ids() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def bpf_map_ids() -> set[int]:
    import json
    import subprocess

    out = subprocess.run(
        ["bpftool", "map", "show", "--json"], capture_output=True, text=True, check=True
    ).stdout
    return {int(m["id"]) for m in json.loads(out)}

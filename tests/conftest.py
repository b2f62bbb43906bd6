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

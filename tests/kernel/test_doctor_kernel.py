"""Doctor, the BTF reader and the demo on the real machine."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gmemtrace.doctor import OK, diagnose
from gmemtrace.kernel import kvm
from gmemtrace.kernel.btf import Btf
from gmemtrace.probes.bcc_backend import PROGRAM_TYPES

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]


def test_doctor_finds_a_working_tracepoint_tier() -> None:
    d = diagnose()
    assert d.can_trace, d.blockers
    assert set(d.facts["program_types"]) == set(PROGRAM_TYPES)
    assert d.facts["program_types"]["tracepoint"] is True
    names = {c.name: c for c in d.checks}
    assert names["tracefs"].status == OK
    assert names["BPF tracepoint"].detail == "loaded and attached"
    for kind in ("fentry", "kprobe"):
        check = names[f"BPF {kind}"]
        assert check.detail, f"{kind}: a result without a reason"
    assert "kvm_gmem_get_pfn" in d.facts["gmem_functions"]["btf"]


def test_doctor_tells_in_place_conversion_by_behaviour_as_the_kernel_is_set() -> None:
    """What doctor finds by trying the guest_memfd (it never reads the parameter) agrees
    with kvm's own switch, where the kernel has one (the series' kernels; elsewhere none,
    and there is no in-place conversion)."""
    switch = Path("/sys/module/kvm/parameters/gmem_in_place_conversion")
    on = switch.exists() and switch.read_text().strip() == "Y"
    found = diagnose().facts["inplace_conversion"]
    assert found["on"] is on
    if not on:
        assert found["converts_on"] == []


def test_doctor_json_from_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gmemtrace", "doctor", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["can_trace"] is True and doc["reason"] == ""
    caps = doc["facts"]["kvm_caps"]
    assert caps["KVM_CAP_GUEST_MEMFD"] == 1
    assert {c["status"] for c in doc["checks"]} <= {"ok", "warn", "fail", "info"}


def bpftool_member_offsets(struct: str) -> dict[str, int]:
    """Member byte offsets of `struct` as bpftool (an independent BTF reader) prints them."""
    dump = subprocess.run(
        ["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = iter(dump.splitlines())
    for line in lines:
        if f"STRUCT '{struct}' " in line:
            members = {}
            for member in lines:
                found = re.match(r"\s+'([^']+)' type_id=\d+ bits_offset=(\d+)", member)
                if not found:
                    break
                members[found[1]] = int(found[2]) // 8
            return members
    raise AssertionError(f"bpftool did not list struct {struct}")


@pytest.mark.parametrize(
    ("struct", "members"),
    [
        ("kvm_memory_slot", ["base_gfn", "npages", "userspace_addr", "flags", "id"]),
        ("vm_fault", ["flags", "pmd", "page"]),
        ("kvm_page_fault", ["addr", "gfn", "slot", "pfn"]),
    ],
)
def test_member_offsets_agree_with_bpftool(struct: str, members: list[str]) -> None:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed")
    btf = Btf.load()
    expected = bpftool_member_offsets(struct)
    for member in members:
        assert btf.member(struct, member).offset_bytes == expected[member], member


@pytest.mark.parametrize(
    ("struct", "ours"),
    [
        ("kvm_create_guest_memfd", kvm.CreateGuestMemfd),
        ("kvm_userspace_memory_region2", kvm.UserspaceMemoryRegion2),
        ("kvm_sregs", kvm.Sregs),
        ("kvm_regs", kvm.Regs),
    ],
)
def test_uapi_layouts_match_the_running_kernel(struct: str, ours: type[ctypes.Structure]) -> None:
    btf = Btf.load()
    assert btf.struct_size(struct) == ctypes.sizeof(ours)
    for name, _ in ours._fields_[:3]:
        assert btf.member(struct, name).offset_bytes == getattr(ours, name).offset


def test_demo_without_a_terminal_shows_intervals_summary_and_verdict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gmemtrace", "demo"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "events/s" in result.stdout and "INODE" in result.stdout
    assert "gmemtrace report" in result.stdout
    assert "every count above equals the workload's ground truth" in result.stdout


def test_demo_replays_the_shipped_trace_and_says_so() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gmemtrace", "demo", "--replay"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "replaying demo.trace: --replay asked for it" in result.stdout
    assert "gmemtrace report" in result.stdout and "refused" not in result.stderr


def test_demo_on_a_terminal() -> None:
    leader, follower = os.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gmemtrace", "demo"],
            stdout=follower,
            stderr=follower,
            env=env,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(leader)
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", b"".join(chunks).decode(errors="replace"))
    assert "\x1b[" in b"".join(chunks).decode(errors="replace")  # styled for a terminal
    assert "shared" in screen and "pages/cell" in screen  # the dashboard was drawn
    assert "every count above equals the workload's ground truth" in screen

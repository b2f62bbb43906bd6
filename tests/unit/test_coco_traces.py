"""The model on traces recorded in the lab's debian-6.12-sw kernel (the `coco` scenario on a
software-protected VM), through each tier: the report equals that run's ground truth.

The tracepoint tier's guest faults arrive by guest physical address (kvm:kvm_page_fault)
and are found through the memslots and the VM's memory attributes; the function tier's
come with their page (kvm_gmem_get_pfn). Recorded by lab/tests (make lab) on real KVM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gmemtrace
from gmemtrace.events import GUEST_FAULT_BY_GPA, GUEST_FAULT_TIMED, Counter, Kind
from gmemtrace.report import report_file

DATA = Path(__file__).resolve().parents[1] / "data"
TIERS = {"kprobe": GUEST_FAULT_TIMED, "tracepoint": GUEST_FAULT_BY_GPA}


def load(tier: str) -> tuple[dict[str, Any], dict[str, Any], Path]:
    trace = DATA / f"coco-{tier}.trace"
    truth = json.loads((DATA / f"coco-{tier}.truth.json").read_text())
    return report_file(trace), truth, trace


@pytest.mark.parametrize("tier", TIERS)
def test_each_tier_equals_its_ground_truth(tier: str) -> None:
    report, truth, _ = load(tier)
    (inode,) = truth["inodes"]
    (got,) = report["inodes"]
    # Recorded before host_faults_beyond_eof was counted: compare what the truth has.
    assert {k: got[k] for k in inode["counts"]} == inode["counts"]
    assert set(inode["counts"]) | {"host_faults_beyond_eof"} == set(Counter)
    assert (got["size_pages"], got["flags"], got["init"]) == (32, 0, "private")
    assert got["shared_pages"] == sum(
        r["count"] for r in inode["shareability"] if r["state"] == "shared"
    )
    exits = [
        {k: e[k] for k in ("gpa", "size", "private", "ino", "page")}
        for e in report["memory_fault_exits"]["exits"]
    ]
    assert exits == truth["facts"]["memory_fault_exits"]


@pytest.mark.parametrize("tier", TIERS)
def test_guest_faults_come_from_that_tier(tier: str) -> None:
    _, _, trace = load(tier)
    events = gmemtrace.read_trace(trace).events
    faults = events[events["kind"] == Kind.GUEST_FAULT.label]
    assert len(faults) > 0
    assert (faults["flags"].to_numpy() & TIERS[tier]).all()


def test_faults_on_shared_or_unbound_frames_are_not_guest_memfd_faults() -> None:
    """kvm_page_fault fires for every nested fault: on the code page, on frames made shared,
    on private frames without a guest_memfd (memory fault exits); none of them counts."""
    report, truth, trace = load("tracepoint")
    events = gmemtrace.read_trace(trace).events
    by_gpa = events[(events["kind"] == Kind.GUEST_FAULT.label)]
    assert len(by_gpa) > truth["inodes"][0]["counts"]["guest_faults"]
    assert report["inodes"][0]["guest_faults"] == truth["inodes"][0]["counts"]["guest_faults"]


def test_function_tier_guest_faults_carry_their_latency() -> None:
    _, _, trace = load("kprobe")
    hist = gmemtrace.read_trace(trace)
    events = hist.events
    faults = events[events["kind"] == Kind.GUEST_FAULT.label]
    assert (faults["arg2"] > 0).all()
    assert np.all(faults["result"] == 0)

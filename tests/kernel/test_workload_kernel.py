"""The workload on real KVM: its ground truth agrees with what the kernel itself reports.

After every operation the ledger is compared with the kernel: mincore() for the
pages in each guest_memfd's page cache, /proc/self/pagemap for the host page
table entries (a host fault happens exactly where one was missing).

mincore() counts only uptodate folios, and guest_memfd marks a folio uptodate
when it is first prepared (zeroed on a fault), not when fallocate() adds it:
pages fallocated and never touched are in the page cache but not in mincore.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gmemtrace import cli
from gmemtrace.kernel import kvm
from gmemtrace.kernel.kvm import GUEST_MEMFD_FLAG_INIT_SHARED as INIT_SHARED
from gmemtrace.kernel.kvm import GUEST_MEMFD_FLAG_MMAP as MMAP
from gmemtrace.workload import SCENARIOS, Params, Workload, guest, run_scenario
from gmemtrace.workload.scenarios import VM_TYPES
from gmemtrace.workload.vmm import HostMapping

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kvm_ready")]


def resident(mapping: HostMapping) -> set[int]:
    return {mapping.offset_pages + i for i, r in enumerate(mapping.resident()) if r}


def agree(wl: Workload, mapping: HostMapping, unprepared: frozenset[int] = frozenset()) -> None:
    """The ledger matches the kernel; `unprepared`: fallocated pages not yet faulted."""
    ledger = wl.truth[mapping.gmem.ino]
    window = set(range(mapping.offset_pages, mapping.offset_pages + mapping.npages))
    assert resident(mapping) == (ledger.resident - unprepared) & window
    assert unprepared <= ledger.resident
    assert mapping.present() == ledger.host_mapped.get(id(mapping), set())


@pytest.fixture
def wl() -> Any:
    workload = Workload("test")
    yield workload
    workload.close()


def test_inode_numbers_are_the_kernels(wl: Workload) -> None:
    gmem = wl.guest_memfd(8, MMAP | INIT_SHARED)
    mapping = wl.map(gmem)
    assert os.readlink(f"/proc/self/fd/{gmem.fd}") == "anon_inode:[kvm-gmem]"
    assert os.stat(f"/proc/self/fd/{gmem.fd}").st_ino == gmem.ino
    maps = Path("/proc/self/maps").read_text().splitlines()
    start = f"{mapping.addr:x}-"
    line = next(m for m in maps if m.startswith(start))
    assert line.split()[4] == str(gmem.ino)
    assert line.endswith("[kvm-gmem]")


def test_ledger_tracks_faults_residency_and_punches_step_by_step(wl: Workload) -> None:
    gmem = wl.guest_memfd(32, MMAP | INIT_SHARED)
    host = wl.map(gmem)
    steps = [
        lambda: wl.host_touch(host, 0, 12),
        lambda: wl.host_touch(host, 20, 6, "random"),
        lambda: wl.zap(host, 4, 4),
        lambda: wl.host_touch(host, 0, 8, "reverse"),
        lambda: wl.punch(gmem, 2, 4),
        lambda: wl.host_touch(host, 0, 8),
    ]
    for step in steps:
        step()
        agree(wl, host)
    counts = wl.truth[gmem.ino].counts
    assert counts["host_faults"] == 12 + 6 + 4 + 4
    assert counts["pages_allocated"] == 12 + 6 + 4
    assert counts["pages_freed"] == 4


def test_fallocated_pages_are_prepared_by_the_first_touch_without_a_new_allocation(
    wl: Workload,
) -> None:
    gmem = wl.guest_memfd(16, MMAP | INIT_SHARED)
    host = wl.map(gmem)
    wl.fallocate(gmem, 4, 4)
    agree(wl, host, unprepared=frozenset(range(4, 8)))
    wl.host_touch(host, 4, 6)
    agree(wl, host)
    counts = wl.truth[gmem.ino].counts
    assert counts["pages_allocated"] == 4 + 2
    assert counts["host_faults"] == 6


def test_second_mapping_of_the_same_pages_faults_separately(wl: Workload) -> None:
    gmem = wl.guest_memfd(16, MMAP | INIT_SHARED)
    whole, window = wl.map(gmem), wl.map(gmem, 4, 8)
    wl.host_touch(whole, 0, 16)
    wl.host_touch(window, 4, 8)
    agree(wl, whole)
    agree(wl, window)
    assert window.read(5, 0, 1) == b"\xa5"  # one page cache under both mappings
    assert wl.truth[gmem.ino].counts["pages_allocated"] == 16


def test_guest_writes_are_visible_through_the_host_mapping(wl: Workload) -> None:
    gmem = wl.guest_memfd(64, MMAP | INIT_SHARED)
    host = wl.map(gmem)
    wl.bind(1, 0, gmem, host)
    assert wl.run_guest([1, 7, 33]) == kvm.KVM_EXIT_HLT
    agree(wl, host)  # whether KVM mapped the pages on the host too, the ledger knows
    ledger = wl.truth[gmem.ino]
    assert resident(host) == ledger.resident == {1, 7, 33}
    assert ledger.counts["guest_faults"] == 3
    assert ledger.counts["pages_allocated"] == 3
    (guest_op,) = [op for op in ledger.ops if op["op"] == "guest_touch"]
    for page in (1, 7, 33):
        assert wl.host_read(host, page) == guest.marker(page).to_bytes(2, "little")
    agree(wl, host)
    # A host read faults only where KVM did not already map the page for the guest.
    assert ledger.counts["host_faults"] == 3 - guest_op["host_mapped_by_kvm"]


def test_guest_pages_are_found_through_the_memslot_offset(wl: Workload) -> None:
    gmem = wl.guest_memfd(32, MMAP | INIT_SHARED)
    host = wl.map(gmem, 16, 16)  # the memslot starts at page 16 of the guest_memfd
    wl.bind(1, 0, gmem, host)
    wl.run_guest([0, 3])
    assert resident(host) == {16, 19}
    assert host.read(19, 0, 2) == guest.marker(3).to_bytes(2, "little")


def test_private_touch_in_a_child_dies_of_sigbus(wl: Workload) -> None:
    gmem = wl.guest_memfd(4, MMAP)
    mapping = wl.map(gmem)
    assert wl.touch_in_child(mapping, 1) == signal.SIGBUS
    ledger = wl.truth[gmem.ino]
    assert ledger.counts["host_faults_refused"] == 1
    assert resident(mapping) == set()  # the refused fault allocated nothing


def test_conversion_results_match_the_advertised_capabilities(wl: Workload) -> None:
    gmem = wl.guest_memfd(8, MMAP | INIT_SHARED)
    host = wl.map(gmem)
    wl.bind(1, 0, gmem, host)
    errnos = wl.convert(gmem, 0, 2, to_private=True)
    assert len(errnos) == 2  # in-place on the guest_memfd fd, and VM-wide by gpa
    if not wl.vm.capability(kvm.CAP_MEMORY_ATTRIBUTES):
        assert errnos[1] != 0
    recorded = [op for op in wl.truth[gmem.ino].ops if op["op"] == "convert"]
    assert [op["errno"] for op in recorded] == errnos
    assert {op["interface"] for op in recorded} == {
        "KVM_SET_MEMORY_ATTRIBUTES2",
        "KVM_SET_MEMORY_ATTRIBUTES",
    }


def test_release_empties_the_page_cache(wl: Workload) -> None:
    gmem = wl.guest_memfd(8, MMAP | INIT_SHARED)
    wl.fallocate(gmem, 0, 5)
    dup = os.dup(gmem.fd)  # a second reference keeps the inode alive past close()
    try:
        wl.close()
        ledger = wl.truth[gmem.ino]
        assert ledger.counts["pages_freed"] == 5
        assert ledger.resident_before_release == {0, 1, 2, 3, 4}
    finally:
        os.close(dup)


# Scenarios on the default VM type; `coco` needs the software-protected type (the lab runs it).
DEFAULT_VM_SCENARIOS = [s for s in SCENARIOS if s not in VM_TYPES]


@pytest.mark.parametrize("scenario", DEFAULT_VM_SCENARIOS)
def test_every_scenario_runs_and_reports_what_it_saw(scenario: str) -> None:
    params = Params(pages=256, rounds=3) if scenario == "fault-storm" else Params()
    truth = run_scenario(scenario, params)
    assert truth["scenario"] == scenario and truth["pid"] == os.getpid()
    assert truth["inodes"], "every scenario creates guest_memfds"
    for inode in truth["inodes"]:
        counts = inode["counts"]
        assert counts["pages_freed"] == counts["pages_allocated"]  # all released at the end
        assert sum(s["count"] for s in inode["shareability"]) == inode["size_pages"]
    facts = truth["facts"]
    if scenario in ("mixed", "guest"):
        assert facts["guest_writes_seen"] is True
    if scenario == "mixed":
        assert facts["child_signal"] == "SIGBUS"
    if scenario == "private-touch":
        assert facts["children_killed_by_sigbus"] == 4
    if scenario == "fault-storm":
        assert truth["inodes"][0]["counts"]["host_faults"] == 256 * 3
        assert facts["host_faults_per_s"] > 0


def test_a_scenario_whose_vm_type_this_kernel_lacks_says_so_in_one_line() -> None:
    with os.fdopen(os.open("/dev/kvm", os.O_RDWR), "rb", buffering=0) as dev:
        offered = kvm.vm_types(kvm.check_extension(dev.fileno(), kvm.CAP_VM_TYPES))
    if kvm.KVM_X86_SW_PROTECTED_VM in offered:
        pytest.skip("this kernel has software-protected VMs: coco runs (the lab tests it)")
    result = subprocess.run(
        [sys.executable, "-m", "gmemtrace", "workload", "coco"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "gmemtrace: error: this kernel offers no KVM_X86_SW_PROTECTED_VM"
    )
    assert result.stderr.count("\n") == 1


def test_cli_writes_ground_truth_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "truth.json"
    assert cli.main(["workload", "private-touch", "--pages", "2", "-o", str(out), "--json"]) == 0
    written = json.loads(out.read_text())
    printed = json.loads(capsys.readouterr().out)
    assert written == printed
    assert written["format"] == "gmemtrace-ground-truth/1"
    assert written["inodes"][0]["counts"]["host_faults_refused"] == 2
    assert written["inodes"][0]["flag_names"] == ["MMAP"]

"""The lab's suite on the in-place conversion kernel (Debian's 7.2.13 with the v8 series,
KVM built in): booted with kvm.gmem_in_place_conversion=1 (inplace-7.2: shared/private
per page in the guest_memfd inode) and =0 (inplace-7.2-vm: the per-VM attributes).

In place, every tier (fentry, the default here; kprobes; tracepoints) records the
`inplace` scenario equal to its ground truth page by page, and any command's conversions,
refused host faults and guest faults equal what bpftrace counts on the same functions in
the same boot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.kernel.test_trace_kernel import assert_matches_truth
from tests.tracing import Bpftrace, events_of

KERNEL = os.environ.get("GMEMTRACE_LAB_KERNEL", "")
if not KERNEL.startswith("inplace-"):
    pytest.skip("runs inside the in-place lab kernels: make lab", allow_module_level=True)
IN_PLACE = KERNEL == "inplace-7.2"
GMEMTRACE = [sys.executable, "-m", "gmemtrace"]
SERIES_EVENTS = {"convert", "host_fault", "host_fault_refused", "shareability_setup"}
TIERS = [None, "kprobe", "tracepoint"]  # None: the plan's choice, fentry here


def gmemtrace(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GMEMTRACE, *args], capture_output=True, text=True, check=False, timeout=timeout
    )


def report_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout[result.stdout.rindex('{\n  "trace"') :]))


def test_doctor_says_whether_conversion_is_in_place() -> None:
    result = gmemtrace("doctor", "--json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)["facts"]
    assert facts["kernel"].startswith("7.2")
    param = Path("/sys/module/kvm/parameters/gmem_in_place_conversion").read_text().strip()
    assert param == ("Y" if IN_PLACE else "N")
    assert facts["inplace_conversion"]["on"] is IN_PLACE
    assert facts["program_types"]["fentry"] is True, "KVM built in: fentry attaches"


def test_the_plan_takes_fentry_on_the_series_functions() -> None:
    result = gmemtrace("probes", "--json")
    assert result.returncode == 0, result.stderr
    plan = {c["event"]: c for c in json.loads(result.stdout)}
    expected = {
        "convert": "fentry:kvm_gmem_ioctl",
        "host_fault": "fentry:kvm_gmem_fault_user_mapping",
        "host_fault_refused": "fentry:kvm_gmem_fault_user_mapping",
        "shareability_setup": "fentry:kvm_gmem_create",
        "guest_fault": "fentry:kvm_gmem_get_pfn",
        "punch": "fentry:kvm_gmem_fallocate",
    }
    assert {e: plan[e]["attach"] for e in expected} == expected
    forced = json.loads(gmemtrace("probes", "--json", "--tier", "kprobe").stdout)
    assert {c["event"]: c["tier"] for c in forced if c["event"] in SERIES_EVENTS} == dict.fromkeys(
        SERIES_EVENTS, "kprobe"
    )


def record(tmp_path: Path, tier: str | None, *command: str) -> tuple[dict[str, Any], Path]:
    trace = tmp_path / f"{tier or 'default'}.trace"
    forced = ["--tier", tier] if tier else []
    result = gmemtrace("record", *forced, "-o", str(trace), "--json", "--", *command)
    return report_of(result), trace


if not IN_PLACE:

    def test_the_scenario_says_in_place_conversion_is_off() -> None:
        result = gmemtrace("workload", "inplace")
        assert result.returncode == 2, result.stderr
        assert "keeps no shareability in the guest_memfd" in result.stderr
        assert "Traceback" not in result.stderr


if IN_PLACE:

    @pytest.mark.parametrize("tier", TIERS, ids=["fentry", "kprobe", "tracepoint"])
    def test_the_scenario_equals_its_ground_truth_page_by_page(
        tmp_path: Path, tier: str | None
    ) -> None:
        truth_file = tmp_path / "truth.json"
        report, trace = record(
            tmp_path, tier, *GMEMTRACE, "workload", "inplace", "-q", "-o", str(truth_file)
        )
        truth = json.loads(truth_file.read_text())
        assert_matches_truth(report, truth, trace)
        by_ino = {i["ino"]: i for i in report["inodes"]}
        for inode in truth["inodes"]:
            runs = [{k: r[k] for k in ("first", "count", "state")} for r in
                    by_ino[inode["ino"]]["shareability"]]  # fmt: skip
            assert runs == inode["shareability"], "the report's page runs are the truth's"
            told = [(op["first"], op["blocking_page"]) for op in inode["ops"]
                    if op["op"] == "convert" and "blocking_page" in op]  # fmt: skip
            seen = [(c["first"], c["blocking_page"]) for c in report["conversions"]
                    if c["ino"] == inode["ino"] and c["blocking_page"] is not None]  # fmt: skip
            assert seen == told, "each refused conversion with the page that blocked it"
            noops = [op["first"] for op in inode["ops"] if op.get("noop")]
            assert [c["first"] for c in report["conversions"]
                    if c["ino"] == inode["ino"] and c["noop"]] == noops  # fmt: skip
        blocked = truth["facts"]["blocked"]
        assert blocked["errno"] == "EAGAIN" and blocked["page"] == 10
        private, shared = truth["inodes"]
        assert private["counts"]["guest_faults"] == 8
        assert private["counts"]["host_faults_refused"] == 4
        assert shared["counts"]["host_faults_refused"] == 1
        if tier is None:
            assert report["probes"]["convert"] == "fentry: fentry:kvm_gmem_ioctl"
            setups = events_of(trace, "shareability_setup")
            assert [(e["ino"], e["count"]) for e in setups] == [
                (i["ino"], i["size_pages"]) for i in truth["inodes"]
            ]

    # fexit and fentry (bpftrace's kretfunc, kfunc): every return counted, whatever else is
    # attached to the function; one map per outcome (no string keys).
    BPFTRACE = """
    BEGIN { printf("attached\\n"); }
    kretfunc:kvm_gmem_ioctl /retval == 0/ { @ok = count(); }
    kretfunc:kvm_gmem_ioctl /retval != 0/ { @refused = count(); }
    kretfunc:kvm_gmem_fault_user_mapping /(retval & 0x402) == 0x2/ { @sigbus = count(); }
    kfunc:kvm_gmem_get_pfn { @guest = count(); }
    """

    @pytest.mark.parametrize("tier", TIERS, ids=["fentry", "kprobe", "tracepoint"])
    def test_any_command_equals_what_bpftrace_counts_in_the_same_boot(
        tmp_path: Path, tier: str | None
    ) -> None:
        """`gmemtrace record -- CMD`: its conversions, refused host faults and guest faults are
        the calls bpftrace counts on the same functions, attached before and detached after."""
        with Bpftrace(BPFTRACE) as counter:
            workload = " ".join([*GMEMTRACE, "workload", "inplace", "-q"])
            report, _ = record(tmp_path, tier, "sh", "-c", f"{workload} && {workload} --pages 48")
        counted, output = counter.counts, counter.output
        conversions = report["conversions"]
        ok = sum(1 for c in conversions if c["result"] == 0)
        seen = (counted.get("@ok", 0), counted.get("@refused", 0))
        assert (ok, len(conversions) - ok) == seen, output
        assert ok > 0 and len(conversions) > ok
        blocked = [c["blocking_page"] for c in conversions if c["blocking_page"] is not None]
        assert blocked == [10, 10], "each run's EAGAIN, with the page held"
        inodes = report["inodes"]
        refused = sum(i["host_faults_refused"] + i["host_faults_beyond_eof"] for i in inodes)
        assert refused == counted.get("@sigbus", 0) > 0, output
        assert sum(i["guest_faults"] for i in inodes) == counted.get("@guest", 0) > 0, output


def test_a_guest_memfd_mapped_before_attaching_is_found(tmp_path: Path) -> None:
    """/proc names a guest_memfd differently on this kernel (a file of guest_memfd's own
    file system, "/[kvm-gmem] (deleted)", not "anon_inode:[kvm-gmem]"): attached to a
    storm that mapped its memory already, the live view's counting mode counts it exactly,
    in random order."""
    import signal

    from gmemtrace.events import Counter
    from gmemtrace.kernel.procfs import gmem_mappings
    from tests.tracing import Started, wait_until

    truth_path = tmp_path / "truth.json"
    workload = subprocess.Popen(
        [
            *(*GMEMTRACE, "workload", "fault-storm", "--pages", "512", "--rounds", "4"),
            *("--pattern", "random", "--wait-signal", "-q", "-o", str(truth_path)),
        ]
    )
    try:
        mappings = wait_until(lambda: gmem_mappings(workload.pid), "the storm mapped its memory")
        with Started(["--pid", str(workload.pid), "--json", "-i", "60"]) as view:
            os.kill(workload.pid, signal.SIGUSR1)  # attached late: now it may go on
            status, out, err = view.finish()
        assert status == 0, err
    finally:
        workload.wait(timeout=600)
    (inode,) = json.loads(truth_path.read_text())["inodes"]
    assert [m.ino for m in mappings] == [inode["ino"]]
    last = json.loads(out.strip().splitlines()[-1])
    (seen,) = [i for i in last["inodes"] if i["ino"] == inode["ino"]]
    expected = {k: v for k, v in inode["counts"].items() if k in seen["totals"]}
    assert {k: seen["totals"][k] for k in expected} == expected
    assert expected[Counter.HOST_FAULTS] == 512 * 4 and last["lost_events"] == 0

"""Recording the real workload: the report equals the workload's ground truth, exactly.

Each scenario runs under `gmemtrace record -- gmemtrace workload ...`; the
workload writes what it did (and so what the kernel must have done), the
tracer writes what it saw. Replaying the trace must give the same report.
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

import gmemtrace
from gmemtrace.events import Counter
from gmemtrace.kernel.procfs import gmem_mappings
from gmemtrace.report import report_file
from tests.explained import expected_causes, explained_causes
from tests.tracing import SAFETY_S, Started, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]

GMEMTRACE = [sys.executable, "-m", "gmemtrace"]


def last_report(stdout: str) -> dict[str, Any]:
    """The report `record --json` prints after the command's own output."""
    report: dict[str, Any] = json.loads(stdout[stdout.rindex('{\n  "trace"') :])
    return report


def record(
    tmp_path: Path, scenario: str, *workload_args: str
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    trace, truth = tmp_path / "t.trace", tmp_path / "truth.json"
    result = subprocess.run(
        [
            *GMEMTRACE,
            "record",
            "-o",
            str(trace),
            "--json",
            "--",
            *GMEMTRACE,
            "workload",
            scenario,
            "-o",
            str(truth),
            *workload_args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return last_report(result.stdout), json.loads(truth.read_text()), trace


def shareability_runs(trace: Path, ino: int) -> list[dict[str, Any]]:
    frame = gmemtrace.read_trace(trace).shareability(ino)
    return [
        {"first": int(r.first), "count": int(r.pages), "state": r.state} for r in frame.itertuples()
    ]


def conversion_results(report: dict[str, Any], ino: int) -> list[tuple[str, str, int, int, int]]:
    return [
        (c["interface"], c["to"], c["first"], c["count"], -c["result"])
        for c in report["conversions"]
        if c["ino"] == ino
    ]


def truth_conversions(inode: dict[str, Any]) -> list[tuple[str, str, int, int, int]]:
    return [
        (op["interface"], op["to"], op["first"], op["count"], op["errno"])
        for op in inode["ops"]
        if op["op"] == "convert"
    ]


def assert_matches_truth(report: dict[str, Any], truth: dict[str, Any], trace: Path) -> None:
    by_ino = {i["ino"]: i for i in report["inodes"]}
    assert set(by_ino) == {i["ino"] for i in truth["inodes"]}, "exactly the workload's inodes"
    for inode in truth["inodes"]:
        got = by_ino[inode["ino"]]
        assert {k: got[k] for k in Counter} == inode["counts"], inode["ino"]
        assert (got["size_pages"], got["flags"], got["init"]) == (
            inode["size_pages"],
            inode["flags"],
            inode["init"],
        )
        assert shareability_runs(trace, inode["ino"]) == inode["shareability"]
        assert conversion_results(report, inode["ino"]) == truth_conversions(inode)
    assert report["trace"]["lost_events"] == 0
    assert truth["pid"] in report["trace"]["pids"]
    assert explained_causes(report["explanations"]) == expected_causes(truth)


SCENARIOS = [
    ("mixed", ()),
    ("fault-storm", ("--pages", "1024", "--rounds", "4")),
    ("private-touch", ()),
    ("conversions", ()),
    ("guest", ()),
]


@pytest.mark.parametrize(("scenario", "args"), SCENARIOS, ids=[s for s, _ in SCENARIOS])
def test_report_equals_ground_truth(tmp_path: Path, scenario: str, args: tuple[str, ...]) -> None:
    report, truth, trace = record(tmp_path, scenario, *args)
    assert_matches_truth(report, truth, trace)
    assert report_file(trace) == report, "replaying the file gives the identical report"


def test_forked_children_that_die_of_sigbus_are_attributed(tmp_path: Path) -> None:
    report, truth, _ = record(tmp_path, "private-touch", "--pages", "3")
    (inode,) = report["inodes"]
    assert inode["host_faults_refused"] == 3
    assert inode["host_faults"] == 0
    children = {op["pid"] for op in truth["inodes"][0]["ops"] if op["op"] == "host_fault_refused"}
    assert len(children) == 3 and children <= set(report["trace"]["pids"])
    assert inode["private_pages"] == inode["size_pages"]


def test_trace_attached_after_the_workload_mapped_its_memory(tmp_path: Path) -> None:
    truth_path, trace = tmp_path / "truth.json", tmp_path / "late.trace"
    workload = subprocess.Popen(
        [*GMEMTRACE, "workload", "mixed", "--wait-signal", "-o", str(truth_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: gmem_mappings(workload.pid), "the workload mapped its guest_memfd")
        with Started(
            ["record", "--pid", str(workload.pid), "-o", str(trace), "--json"]
        ) as recorder:
            os.kill(workload.pid, signal.SIGUSR1)  # attached late: now it may go on
            status, out, err = recorder.finish()
        assert status == 0, err
    finally:
        workload.wait(timeout=SAFETY_S)
    report, truth = last_report(out), json.loads(truth_path.read_text())
    by_ino = {i["ino"]: i for i in report["inodes"]}
    first, *later = truth["inodes"]
    # The first guest_memfd existed before attaching: discovered, flags unknown,
    # its pages' shareability inferred from the faults that succeeded.
    found = by_ino[first["ino"]]
    assert {k: found[k] for k in Counter} == first["counts"]
    assert found["init"] == "unknown" and found["flags"] is None
    assert found["size_pages"] == first["size_pages"]
    faulted = {
        p
        for op in first["ops"]
        if op["op"] == "host_touch"
        for p in range(op["first"], op["first"] + op["count"])
    }
    assert found["shared_pages"] == len(faulted) and found["private_pages"] == 0
    for inode in later:  # created after attaching: exact, as always
        assert {k: by_ino[inode["ino"]][k] for k in Counter} == inode["counts"]
        assert by_ino[inode["ino"]]["init"] == inode["init"]


BEYOND_EOF = """
import json, sys
from gmemtrace.kernel.kvm import GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP
from gmemtrace.workload import Workload
wl = Workload("beyond-eof")
gmem = wl.guest_memfd(4, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)
longer = wl.map(gmem, 0, 8)  # a mapping twice as long as the file
wl.host_touch(longer, 0, 4)
wl.facts["signal"] = wl.touch_in_child(longer, 6)
wl.close()
open(sys.argv[1], "w").write(json.dumps(wl.ground_truth()))
"""


def test_a_fault_beyond_the_end_is_its_own_refusal(tmp_path: Path) -> None:
    """Not a refused fault on a private page, and the file does not grow to hold it."""
    trace, truth_path = tmp_path / "t.trace", tmp_path / "truth.json"
    result = subprocess.run(
        [*GMEMTRACE, "record", "-o", str(trace), "--json", "--",
         sys.executable, "-c", BEYOND_EOF, str(truth_path)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    truth = json.loads(truth_path.read_text())
    assert truth["facts"]["signal"] == 7  # SIGBUS
    report = last_report(result.stdout)
    assert_matches_truth(report, truth, trace)
    (inode,) = report["inodes"]
    assert inode["size_pages"] == 4, "the size it was created with"
    assert (inode["host_faults_beyond_eof"], inode["host_faults_refused"]) == (1, 0)
    assert (inode["shared_pages"], inode["private_pages"], inode["unknown_pages"]) == (4, 0, 0)

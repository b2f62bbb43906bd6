"""`gmemtrace record` and `probes` on the real kernel: errors, plans, and nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gmemtrace.tracefile import read_trace_file
from tests.tracing import Owned, Started, still_loaded

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]
GMEMTRACE = [sys.executable, "-m", "gmemtrace"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GMEMTRACE, *args], capture_output=True, text=True, check=False, timeout=timeout
    )


def test_pid_that_does_not_exist_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run("record", "--pid", "999999999", "-o", str(tmp_path / "t.trace"))
    assert result.returncode == 2
    assert result.stderr == "gmemtrace: error: no process with pid 999999999\n"
    assert not (tmp_path / "t.trace").exists()


def test_forcing_a_tier_the_kernel_refuses_says_why(tmp_path: Path) -> None:
    plan = json.loads(run("probes", "--json").stdout)
    if any(c["tier"] == "kprobe" for c in plan):
        pytest.skip("kprobes load on this kernel: nothing to refuse (the lab tests them)")
    result = run("record", "--tier", "kprobe", "-o", str(tmp_path / "t.trace"), "--", "true")
    assert result.returncode == 1
    assert result.stderr.startswith("gmemtrace: error: tier kprobe cannot be used here: ")
    assert "no kprobes" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_tier_this_kernel_refuses_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """fentry collects where it loads (the lab's 7.2 kernel); this kernel refuses it at load
    (PVM), so forcing it says why, in one line, and records nothing."""
    plan = json.loads(run("probes", "--json").stdout)
    if any(c["tier"] == "fentry" for c in plan):
        pytest.skip("fentry loads on this kernel: nothing to refuse (the lab tests it)")
    trace = tmp_path / "t.trace"
    result = run("record", "--tier", "fentry", "-o", str(trace), "--", "true")
    assert result.returncode == 1
    assert result.stderr.startswith("gmemtrace: error: tier fentry cannot be used here: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not trace.exists()


def test_probe_plan_covers_every_logical_event() -> None:
    result = run("probes", "--json")
    assert result.returncode == 0, result.stderr
    plan = {c["event"]: c for c in json.loads(result.stdout)}
    assert set(plan) >= {
        "create",
        "bind",
        "host_fault",
        "host_fault_refused",
        "guest_fault",
        "alloc",
        "free",
        "punch",
        "convert",
        "memory_fault_exit",
        "shareability_setup",
        "release",
    }
    for event in ("host_fault", "alloc", "free", "punch", "convert", "create"):
        assert plan[event]["tier"] is not None, event
    for choice in plan.values():
        if choice["tier"] == "tracepoint":
            better = {tier for tier, _ in choice["rejected"]}
            assert better == {"fentry", "kprobe"}, "each better tier says why it was rejected"
        if choice["tier"] is None:
            assert choice["rejected"], "an unavailable event says why"


def test_record_everything_for_a_while_then_nothing_is_left_attached(tmp_path: Path) -> None:
    trace = tmp_path / "all.trace"
    with Started(["record", "-d", "1", "-o", str(trace)]) as recorder:
        status, _, err = recorder.finish()
    assert status == 0, err
    assert read_trace_file(trace).complete
    assert recorder.owned.programs, "it held its programs while recording"
    assert still_loaded(recorder.owned) == Owned(), "every program and map it held is gone"


def test_command_output_passes_through_and_its_children_are_followed(tmp_path: Path) -> None:
    trace, truth = tmp_path / "t.trace", tmp_path / "truth.json"
    script = (
        "import subprocess, sys; print('hello from the command'); "
        f"subprocess.run([sys.executable, '-m', 'gmemtrace', 'workload', 'private-touch', "
        f"'--pages', '2', '-o', '{truth}'], check=True, stdout=subprocess.DEVNULL)"
    )
    result = run("record", "-o", str(trace), "--json", "--", sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("hello from the command\n")
    report = json.loads(result.stdout[result.stdout.index("{") :])
    (inode,) = report["inodes"]
    assert inode["ino"] == json.loads(truth.read_text())["inodes"][0]["ino"]
    assert inode["host_faults_refused"] == 2  # grandchildren of the command, followed


def test_probes_prints_the_bpf_c_with_offsets_from_btf() -> None:
    from gmemtrace.kernel.btf import Btf

    result = run("probes", "--ebpf")
    assert result.returncode == 0, result.stderr
    offset = Btf.load().member("inode", "i_ino").offset_bytes
    assert f"#define OFF_INODE_I_INO {offset}\n" in result.stdout
    assert "RAW_TRACEPOINT_PROBE(page_fault_user)" in result.stdout


@pytest.mark.parametrize(
    "view", [["record", "-o", "{trace}"], ["--no-live"]], ids=["record", "view"]
)
def test_the_commands_exit_status_is_handed_back(tmp_path: Path, view: list[str]) -> None:
    """As strace, time and perf record do: CI scripts can wrap a command in gmemtrace."""
    args = [a.format(trace=tmp_path / "t.trace") for a in view]
    result = run(*args, "--", "sh", "-c", "exit 3")
    assert result.returncode == 3, result.stderr
    killed = run(*args, "--", "sh", "-c", "kill -KILL $$")
    assert killed.returncode == 128 + 9, killed.stderr


def _running(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return found.stdout.split()


@pytest.mark.parametrize(
    "view", [["record", "-o", "{trace}"], ["--no-live"]], ids=["record", "view"]
)
def test_a_command_never_outlives_gmemtrace(tmp_path: Path, view: list[str]) -> None:
    """-d ends the command's whole process group: SIGTERM, then SIGKILL for one that
    ignores it; nothing is left running, and gmemtrace says what it did."""
    args = [a.format(trace=tmp_path / "t.trace") for a in view]
    marker = "61.2345"  # a sleep no one else runs
    result = run(
        *args, "-d", "2", "--", "sh", "-c", f"trap '' TERM; sleep {marker} & sleep {marker}"
    )
    assert result.returncode == 0, result.stderr
    # Not waited out: gmemtrace ended the group, and says so.
    assert "ended sh" in result.stderr and "with SIGKILL" in result.stderr
    assert _running(marker) == []


FORKER = """
import os, sys, time
pids = []
while not os.path.exists(sys.argv[1]):  # until the test says stop: a machine busy forking
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    pids.append(pid)
    time.sleep(0.01)
open(sys.argv[2], "w").write(" ".join(map(str, pids)))
"""


def test_a_quiet_recording_reports_its_window_and_no_bystanders(tmp_path: Path) -> None:
    """`record -d 3` of every process while another process forks: the report spans the
    3 s recorded (not the first-to-last event), lists no process that touched no
    guest_memfd, and counts the bystanders as one number."""
    stop, forked = tmp_path / "stop", tmp_path / "forked"
    forker = subprocess.Popen([sys.executable, "-c", FORKER, str(stop), str(forked)])
    try:
        args = ["record", "-d", "3", "--json", "-o", str(tmp_path / "t.trace")]
        with Started(args) as recorder:
            attached = time.monotonic()
            status, out, err = recorder.finish()
            ended = time.monotonic()
    finally:
        stop.touch()
        forker.wait(timeout=600)
    assert status == 0, err
    trace = json.loads(out[out.rindex('{\n  "trace"') :])["trace"]
    assert 3.0 <= trace["duration_s"] <= ended - attached + 1.0  # started before the ready line
    bystanders = {int(p) for p in forked.read_text().split()} | {forker.pid}
    assert not bystanders & set(trace["pids"]), "a process that only forked is not listed"
    assert trace["other_processes_seen"] >= 1
    assert [p["pid"] for p in trace["processes"]] == trace["pids"]
    table = run("report", str(tmp_path / "t.trace"))
    assert table.returncode == 0, table.stderr
    assert f"{trace['duration_s']:.3f} s" in table.stdout


def test_the_report_names_the_processes_that_used_a_guest_memfd(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    result = run(
        "record", "-o", str(tmp_path / "t.trace"), "--json", "--",
        *GMEMTRACE, "workload", "mixed", "-q", "-o", str(truth),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout[result.stdout.rindex('{\n  "trace"') :])["trace"]
    vmm = json.loads(truth.read_text())["pid"]
    assert vmm in trace["pids"]
    (entry,) = [p for p in trace["processes"] if p["pid"] == vmm]
    assert entry["comm"] == Path(sys.executable).name[:15]

"""Reliability on the real kernel: a full disk, a closed pipe, no privileges."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gmemtrace.events import Counter
from gmemtrace.kernel.procfs import gmem_mappings
from gmemtrace.tracefile import TraceFileError, read_trace_file
from tests.tracing import READY, Owned, Started, owned_bpf, still_loaded, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]
GMEMTRACE = [sys.executable, "-m", "gmemtrace"]
STORM = [*GMEMTRACE, "workload", "fault-storm", "--pages", "2048", "--rounds", "4", "--quiet"]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a recording of a fault storm fills it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_stops_the_recording_cleanly(tiny_disk: Path) -> None:
    trace = tiny_disk / "t.trace"
    result = subprocess.run(
        [*GMEMTRACE, "record", "-o", str(trace), "--", *STORM],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("gmemtrace:")]
    assert error.startswith(f"gmemtrace: error: writing {trace} failed (No space left on device)")
    data = read_trace_file(trace)  # what was written before the disk filled is readable
    assert not data.complete and data.problem  # the torn last batch is reported
    assert data.events.size > 0
    assert "gmemtrace report" in result.stdout, "the summary still comes from the live model"


def test_a_closed_pipe_ends_quietly_and_detaches() -> None:
    """As `gmemtrace --json ... | head -1`: the reader goes away after one line."""
    view = subprocess.Popen(
        [*GMEMTRACE, "--json", "-i", "0.2", "--", *STORM],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert view.stdout is not None and view.stderr is not None
    ready = view.stderr.readline()
    assert ready.rstrip().endswith(READY), ready
    owned = owned_bpf(view.pid)
    first = view.stdout.readline()
    view.stdout.close()  # the reader is gone: the next write meets a closed pipe
    view.wait(timeout=300)
    errors = view.stderr.read()
    assert first.startswith('{"time"'), errors
    assert "Traceback" not in errors and "BrokenPipe" not in errors
    assert owned.programs, "it held programs while it ran"
    assert still_loaded(owned) == Owned(), "every program is gone after SIGPIPE"


def test_without_the_capabilities_one_line_names_the_fix(tmp_path: Path) -> None:
    command = " ".join([*GMEMTRACE, "record", "-o", str(tmp_path / "t.trace"), "--", "true"])
    result = subprocess.run(
        ["capsh", "--drop=cap_bpf,cap_perfmon,cap_sys_admin", "--", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "gmemtrace: error: tracing needs CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF; "
        "run it as root (sudo gmemtrace ...)\n"
    )


def _record(*args: str) -> dict[str, object]:
    result = subprocess.run(
        [*GMEMTRACE, "record", "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return _last_report(result.stdout)


def _last_report(stdout: str) -> dict[str, object]:
    report: dict[str, object] = json.loads(stdout[stdout.rindex('{\n  "trace"') :])
    return report


def _counts(report: dict[str, object]) -> dict[int, dict[str, int]]:
    inodes = report["inodes"]
    assert isinstance(inodes, list)
    return {i["ino"]: {k: i[k] for k in Counter} for i in inodes}


def test_a_target_that_execs_into_the_vmm_is_followed(tmp_path: Path) -> None:
    truth, gate = tmp_path / "truth.json", tmp_path / "gate"
    os.mkfifo(gate)
    vmm = shlex.join([*GMEMTRACE, "workload", "mixed", "--quiet", "-o", str(truth)])
    # The shell execs into the VMM once the gate opens: after the recorder has attached.
    shell = subprocess.Popen(["bash", "-c", f"read -r _ < {shlex.quote(str(gate))}; exec {vmm}"])
    try:
        args = ["record", "--json", "--pid", str(shell.pid), "-o", str(tmp_path / "t.trace")]
        with Started(args) as recorder:
            gate.write_text("attached\n")
            status, out, err = recorder.finish()
        assert status == 0, err
        report = _last_report(out)
    finally:
        shell.kill()
        shell.wait()
    expected = {i["ino"]: i["counts"] for i in json.loads(truth.read_text())["inodes"]}
    assert _counts(report) == expected


def test_two_vmms_at_once_each_exact(tmp_path: Path) -> None:
    vmms, truths = [], []
    for n in range(2):
        truths.append(tmp_path / f"truth{n}.json")
        vmms.append(
            subprocess.Popen(
                [
                    *GMEMTRACE,
                    "workload",
                    "mixed",
                    "--wait-signal",
                    "--rate",
                    "300",
                    "--quiet",
                    "-o",
                    str(truths[-1]),
                ]
            )
        )
    try:
        for vmm in vmms:  # each has mapped its memory and waits for SIGUSR1
            wait_until(lambda vmm=vmm: gmem_mappings(vmm.pid), "the VMM mapped its guest_memfd")
        pids = [arg for vmm in vmms for arg in ("--pid", str(vmm.pid))]
        with Started(["record", "--json", *pids, "-o", str(tmp_path / "t.trace")]) as recorder:
            for vmm in vmms:
                os.kill(vmm.pid, signal.SIGUSR1)
            status, out, err = recorder.finish()
        assert status == 0, err
        report = _last_report(out)
    finally:
        for vmm in vmms:
            vmm.wait(timeout=600)
    expected = {}
    for truth in truths:
        expected.update({i["ino"]: i["counts"] for i in json.loads(truth.read_text())["inodes"]})
    assert len(expected) == 6
    assert _counts(report) == expected


MANY_ONE_PAGE_INODES = """
import json, sys
from gmemtrace.kernel.kvm import GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP
from gmemtrace.workload import Workload
wl = Workload("many")
for _ in range(2000):
    gmem = wl.guest_memfd(1, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)
    wl.host_touch(wl.map(gmem), 0, 1)
wl.close()
open(sys.argv[1], "w").write(json.dumps(wl.ground_truth()))
"""


def test_thousands_of_one_page_guest_memfds_each_exact(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    report = _record(
        "-o",
        str(tmp_path / "t.trace"),
        "--",
        sys.executable,
        "-c",
        MANY_ONE_PAGE_INODES,
        str(truth),
    )
    expected = {i["ino"]: i["counts"] for i in json.loads(truth.read_text())["inodes"]}
    assert len(expected) == 2000
    assert _counts(report) == expected


def test_a_pid_that_exits_while_attaching(tmp_path: Path) -> None:
    short = subprocess.Popen(["sleep", "0.2"])
    try:
        report = _record("--pid", str(short.pid), "-o", str(tmp_path / "t.trace"))
    finally:
        short.wait()
    assert report["inodes"] == []


def test_the_live_view_reports_a_recording_it_could_not_finish(tiny_disk: Path) -> None:
    trace = tiny_disk / "t.trace"
    result = subprocess.run(
        [*GMEMTRACE, "--no-live", "-o", str(trace), "--", *STORM],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "gmemtrace report" in result.stdout, "the view and its summary went on"
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"gmemtrace: error: writing {trace} failed (No space left on device)")
    )
    assert read_trace_file(trace).events.size > 0


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_a_signal_ends_a_recording_cleanly(tmp_path: Path, signum: int) -> None:
    trace = tmp_path / "t.trace"
    long_storm = [
        *GMEMTRACE,
        "workload",
        "fault-storm",
        "--pages",
        "1024",
        "--rounds",
        "400",
        "--rate",
        "20000",
        "--quiet",
    ]
    with Started(["record", "-o", str(trace), "--", *long_storm]) as recorder:
        wait_until(lambda: _has_events(trace), "the recording's first events")
        recorder.signal(signum)
        status, out, err = recorder.finish()
    assert status == 0, err
    assert "Traceback" not in err and "gmemtrace report" in out
    data = read_trace_file(trace)
    assert data.complete, data.problem
    assert recorder.owned.programs and recorder.owned.maps
    assert still_loaded(recorder.owned) == Owned(), "every program and map it held is gone"


def _has_events(trace: Path) -> bool:
    try:
        return read_trace_file(trace).events.size > 0
    except (OSError, TraceFileError):  # not created yet, or its header not yet written
        return False


HUGE_AND_ODD = """
import json, sys
from gmemtrace.kernel import kvm
from gmemtrace.kernel.kvm import GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP
from gmemtrace.workload import Workload
pages = (1 << 40) >> 12  # a 1 TiB guest_memfd, sparse: only its last pages are used
wl = Workload("huge")
gmem = wl.guest_memfd(pages, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)
wl.host_touch(wl.map(gmem, pages - 16, 16), pages - 16, 4)
odd = []
for offset, size in ((0, 1000), ((pages - 1) * 4096, 8192)):  # part of a page; past the end
    private = kvm.KVM_MEMORY_ATTRIBUTE_PRIVATE
    args = kvm.MemoryAttributes2(offset=offset, size=size, attributes=private)
    odd.append(kvm.try_ioctl(gmem.fd, kvm.KVM_SET_MEMORY_ATTRIBUTES2, args))
wl.close()
truth = wl.ground_truth()
truth["odd_conversion_errnos"] = odd
open(sys.argv[1], "w").write(json.dumps(truth))
"""


def test_a_sparse_tebibyte_guest_memfd_and_odd_conversions(tmp_path: Path) -> None:
    truth_path = tmp_path / "truth.json"
    report = _record(
        "-o", str(tmp_path / "t.trace"), "--", sys.executable, "-c", HUGE_AND_ODD, str(truth_path)
    )
    truth = json.loads(truth_path.read_text())
    ((ino, counts),) = _counts(report).items()
    (inode,) = report["inodes"]
    assert inode["size_pages"] == 1 << 28 and inode["shared_pages"] == 1 << 28
    assert counts == truth["inodes"][0]["counts"] | {"conversion_attempts": 2}
    odd = [c for c in report["conversions"] if c["ino"] == ino]
    assert [(c["first"], c["count"]) for c in odd] == [(0, 1), ((1 << 28) - 1, 2)]
    assert [-c["result"] for c in odd] == truth["odd_conversion_errnos"]
    assert all(errno != 0 for errno in truth["odd_conversion_errnos"])

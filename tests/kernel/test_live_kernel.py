"""The live view against the real workload: in tmux, headless, as JSON, and beside a recording."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import gmemtrace
from gmemtrace.kernel.procfs import gmem_mappings
from gmemtrace.sinks.interval import SCHEMA
from tests.tracing import SAFETY_S, Started, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]
GMEMTRACE = [sys.executable, "-m", "gmemtrace"]
SLOW_WORKLOAD = [*GMEMTRACE, "workload", "mixed", "--rate", "40", "--hold", "1", "--quiet"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GMEMTRACE, *args], capture_output=True, text=True, check=False, timeout=timeout
    )


def test_live_view_in_a_real_terminal(tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (make setup installs it)")
    session = f"gmemtrace-test-{os.getpid()}"
    truth = tmp_path / "truth.json"
    done = tmp_path / "done"
    command = shlex.join([*GMEMTRACE, "-i", "0.5", "--", *SLOW_WORKLOAD, "-o", str(truth)])
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "100",
            "-y",
            "40",
            # readline under pytest exports LINES/COLUMNS 24/80: not the pane's size
            f"unset LINES COLUMNS; cd {shlex.quote(os.getcwd())} && {command}; "
            f"echo exit=$? > {done}; sleep 30",
        ],
        check=True,
    )
    try:
        screens = []
        deadline = time.monotonic() + SAFETY_S
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.4)
            screens.append(
                subprocess.run(
                    ["tmux", "capture-pane", "-p", "-t", session],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
        assert done.read_text().strip() == "exit=0"
        final = subprocess.run(
            ["tmux", "capture-pane", "-p", "-S", "-200", "-t", session],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    inodes = [i["ino"] for i in json.loads(truth.read_text())["inodes"]]
    live = [s for s in screens if "gmemtrace  " in s and "ino " in s]
    assert live, "the dashboard was on screen while the workload ran"
    assert any(f"ino {inodes[0]}" in s and "█" in s for s in live), "a strip with resident pages"
    rates = [
        int(m.group(1))
        for s in live
        for m in re.finditer(rf"^\s*{inodes[0]}\s+(\d+)\s", s, re.MULTILINE)
    ]
    assert any(r > 0 for r in rates), "a non-zero host fault rate while touching"
    assert "gmemtrace report" in final and "lost events: 0" in final
    assert "every count above" not in final  # not the demo: just the summary


def test_json_intervals_follow_the_schema(tmp_path: Path) -> None:
    result = run("--json", "-i", "0.3", "--", *SLOW_WORKLOAD, "-o", str(tmp_path / "t.json"))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) >= 3
    for record in records:
        jsonschema.validate(record, SCHEMA)
    final = records[-1]
    truth = json.loads((tmp_path / "t.json").read_text())
    by_ino = {i["ino"]: i for i in final["inodes"]}
    for inode in truth["inodes"]:
        assert by_ino[inode["ino"]]["totals"] == {
            **{k: inode["counts"][k] for k in by_ino[inode["ino"]]["totals"]}
        }


def test_headless_plain_tables_and_summary(tmp_path: Path) -> None:
    result = run("-i", "0.5", "--", *SLOW_WORKLOAD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("events/s") >= 3, "a table per interval"
    assert "INODE" in result.stdout and "HOST/s" in result.stdout
    assert "gmemtrace report" in result.stdout


def test_live_view_of_a_running_vmm_agrees_with_a_recording_of_it(tmp_path: Path) -> None:
    workload = subprocess.Popen(
        [*GMEMTRACE, "workload", "mixed", "--wait-signal", "--rate", "200", "--quiet"],
    )
    try:
        wait_until(lambda: gmem_mappings(workload.pid), "the workload mapped its memory")
        pid = str(workload.pid)
        with (
            Started(["--pid", pid, "--json", "-i", "0.5"]) as viewer,
            Started(["record", "--pid", pid, "-o", str(tmp_path / "t.trace"), "--json"]) as rec,
        ):
            os.kill(workload.pid, signal.SIGUSR1)  # both are attached: go on
            recorded, _, recorder_err = rec.finish()
            viewed, out, viewer_err = viewer.finish()
    finally:
        workload.wait(timeout=SAFETY_S)
    assert recorded == 0, recorder_err
    assert viewed == 0, viewer_err
    final: dict[str, Any] = json.loads(out.splitlines()[-1])
    report = json.loads((run("report", str(tmp_path / "t.trace"), "--format", "json")).stdout)
    seen = {i["ino"]: i["totals"] for i in final["inodes"]}
    recorded = {i["ino"]: {k: i[k] for k in seen[i["ino"]]} for i in report["inodes"]}
    assert seen == recorded


def test_pid_that_does_not_exist(tmp_path: Path) -> None:
    result = run("--pid", "999999999", "--no-live")
    assert (result.returncode, result.stderr) == (
        2,
        "gmemtrace: error: no process with pid 999999999\n",
    )


def test_comm_matching_nothing_yet_waits(tmp_path: Path) -> None:
    result = run("--comm", "no-such-vmm", "-d", "1", "--no-live", "-i", "0.4")
    assert result.returncode == 0, result.stderr
    assert "waiting for guest_memfd activity" in result.stdout


def test_comm_follows_a_vmm_that_starts_later_and_nothing_else(tmp_path: Path) -> None:
    """A process that execs into the name is traced from its first event (the kernel takes
    it at exec: no pause for gmemtrace to find it), and no other process is."""
    named = tmp_path / "gmem-late-vmm"  # a process's comm is the name it was run by
    named.symlink_to(sys.executable)
    truth, other_truth = tmp_path / "truth.json", tmp_path / "other.json"
    with Started(["--comm", "gmem-late-vmm", "--json", "-i", "0.3"]) as viewer:
        # Attached, watching, nothing named so yet.
        other = subprocess.run(
            [*GMEMTRACE, "workload", "mixed", "--quiet", "-o", str(other_truth)], check=True
        )
        # Run by another name, Python does not find the virtualenv: give it the paths.
        paths = [str(Path(gmemtrace.__file__).parents[1]), sysconfig.get_path("purelib")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
        command = [str(named), "-m", "gmemtrace", "workload", "mixed", "--quiet", "-o", str(truth)]
        vmm = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        assert vmm.returncode == 0, vmm.stderr
        viewer.signal(signal.SIGINT)
        status, out, err = viewer.finish()
    assert status == 0, err
    assert other.returncode == 0
    final = json.loads(out.strip().splitlines()[-1])
    seen = {i["ino"]: i["totals"] for i in final["inodes"]}
    expected = {i["ino"]: i["counts"] for i in json.loads(truth.read_text())["inodes"]}
    ignored = {i["ino"] for i in json.loads(other_truth.read_text())["inodes"]}
    assert not ignored & set(seen), "a process of another name was not traced"
    assert {ino: {k: seen[ino][k] for k in expected[ino]} for ino in expected} == expected

"""gmemtrace.Session on the real kernel: background recording, snapshots, clean detach."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import gmemtrace
from gmemtrace.tracefile import read_trace_file
from tests.tracing import Owned, owned_bpf, still_loaded

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]


def test_session_snapshots_match_the_ground_truth(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    out = tmp_path / "s.trace"
    cmd = [sys.executable, "-m", "gmemtrace", "workload", "guest", "-o", str(truth)]
    with gmemtrace.Session(cmd=cmd, output=out) as session:
        assert session.wait(timeout=60) == 0
        snap = session.snapshot()
    assert "ground truth: scenario guest" in session.command_output
    (inode,) = json.loads(truth.read_text())["inodes"]
    row = snap.inodes.loc[inode["ino"]]
    for key, value in inode["counts"].items():
        assert row[key] == value, key
    assert read_trace_file(out).complete


def test_leaving_the_block_detaches_even_on_an_exception() -> None:
    already = owned_bpf()  # this process's own, from earlier tests
    with pytest.raises(RuntimeError, match="user error"), gmemtrace.Session(pid=[]) as session:
        attached = owned_bpf()
        assert attached.programs - already.programs, "probes attached inside the block"
        session.snapshot()
        raise RuntimeError("user error")
    mine = Owned(attached.programs - already.programs, attached.maps - already.maps)
    assert still_loaded(mine) == Owned(), "every program and map the block loaded is gone"

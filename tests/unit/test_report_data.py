"""The model and report on a recorded trace (tests/data/mixed.trace and its ground truth)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

import gmemtrace
from gmemtrace import cli
from gmemtrace.report import report_file
from gmemtrace.sinks.report_table import to_csv, to_table

DATA = Path(__file__).resolve().parents[1] / "data"
TRACE = DATA / "mixed.trace"


@pytest.fixture(scope="module")
def truth() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / "mixed.truth.json").read_text())
    return doc


def test_recorded_report_equals_the_ground_truth(truth: dict[str, Any]) -> None:
    report = report_file(TRACE)
    by_ino = {i["ino"]: i for i in report["inodes"]}
    for inode in truth["inodes"]:
        got = by_ino[inode["ino"]]
        assert {k: got[k] for k in inode["counts"]} == inode["counts"]
        assert got["init"] == inode["init"]
    assert report["trace"]["complete"] and report["trace"]["lost_events"] == 0
    assert truth["pid"] in report["trace"]["pids"]


def test_report_json_contract_keys() -> None:
    report = report_file(TRACE)
    assert set(report) >= {"trace", "probes", "inodes"}
    assert set(report["trace"]) >= {"kernel", "duration_s", "lost_events", "pids"}
    for inode in report["inodes"]:
        assert set(inode) >= {
            "ino",
            "size_pages",
            "flags",
            "init",
            "shared_pages",
            "private_pages",
            "unknown_pages",
            "host_faults",
            "host_faults_refused",
            "guest_faults",
            "pages_allocated",
            "pages_freed",
            "hole_punches",
            "conversions_to_shared",
            "conversions_to_private",
        }
        assert (
            inode["shared_pages"] + inode["private_pages"] + inode["unknown_pages"]
            == (inode["size_pages"])
        )
    assert report["probes"]["host_fault"].startswith("tracepoint")


def test_csv_has_one_row_per_inode(truth: dict[str, Any]) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(report_file(TRACE)))))
    assert sorted(int(r["ino"]) for r in rows) == sorted(i["ino"] for i in truth["inodes"])
    assert {int(r["host_faults_refused"]) for r in rows} == {0, 1}


def test_table_shows_inodes_and_counts(truth: dict[str, Any]) -> None:
    console = Console(width=160, record=True)
    console.print(to_table(report_file(TRACE)))
    text = console.export_text()
    for inode in truth["inodes"]:
        assert str(inode["ino"]) in text
    assert "lost events: 0" in text


def test_cli_report_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(TRACE), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == report_file(TRACE)
    assert cli.main(["report", str(TRACE), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("ino,size_pages,flags,init")


def test_read_trace_dataframes(truth: dict[str, Any]) -> None:
    trace = gmemtrace.read_trace(TRACE)
    assert trace.complete
    assert set(trace.inodes.index) == {i["ino"] for i in truth["inodes"]}
    ev = trace.events
    assert {"time_s", "kind", "pid", "comm", "ino", "first", "count"} <= set(ev.columns)
    assert (ev["time_s"] >= 0).all()
    shared = next(i for i in truth["inodes"] if i["init"] == "shared")
    runs = trace.shareability(shared["ino"])
    assert runs["pages"].sum() == shared["size_pages"]
    assert set(runs["provenance"]) == {"creation flags"}
    rate = trace.fault_rate("1s")
    totals = rate.groupby(level="ino").sum()
    for inode in truth["inodes"]:
        got = totals.loc[inode["ino"]] if inode["ino"] in totals.index else None
        host = 0 if got is None else int(got["host_fault"])
        refused = 0 if got is None else int(got["host_fault_refused"])
        assert (host, refused) == (
            inode["counts"]["host_faults"],
            inode["counts"]["host_faults_refused"],
        )


def test_an_inode_number_reused_after_release_is_two_inodes() -> None:
    from gmemtrace.events import EVENT_DTYPE, Kind
    from gmemtrace.kernel.uapi import GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP
    from gmemtrace.model.state import Model
    from gmemtrace.report import build_report

    shared = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED
    rows = [
        (Kind.CREATE, 0, 8, shared),
        (Kind.HOST_FAULT, 1, 1, 0),
        (Kind.ALLOC, 1, 1, 0),
        (Kind.FREE, 1, 1, 0),  # released
        (Kind.CREATE, 0, 4, GUEST_MEMFD_FLAG_MMAP),
        (Kind.HOST_FAULT, 2, 1, 0),  # taken, then refused
        (Kind.HOST_FAULT_REFUSED, 2, 1, 0),
    ]
    ev = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, (kind, first, count, arg) in enumerate(rows):
        ev[i] = (i + 1, 9, 9, kind, 0, 0, 77, first, count, arg, 0, b"vmm")
    model = Model()
    model.apply(ev)
    first, second = build_report(model, "k", {}, 0)["inodes"]
    assert (first["ino"], first["generation"], first["size_pages"]) == (77, 0, 8)
    assert (first["host_faults"], first["pages_freed"], first["init"]) == (1, 1, "shared")
    assert (second["ino"], second["generation"], second["init"]) == (77, 1, "private")
    assert second["host_faults_refused"] == 1 and second["host_faults"] == 0


def test_headless_report_header_never_breaks_inside_a_field() -> None:
    """Many processes on an 80-column console: the header breaks between processes only,
    and the duration is the recording's window (END record), not first-to-last event."""
    report = report_file(TRACE)
    trace = report["trace"]
    trace["processes"] = [{"pid": 100000 + n, "comm": f"qemu-vm{n}"} for n in range(40)]
    trace["pids"] = [p["pid"] for p in trace["processes"]]
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(to_table(report))
    text = console.export_text()
    for n in range(40):
        assert f"qemu-vm{n}[{100000 + n}]" in text, "each name[pid] whole on one line"
    assert all(len(line) <= 80 for line in text.splitlines())
    data = gmemtrace.read_trace(TRACE)
    window = (data.model.stopped_ns or 0) - data.data.header.start_ns
    assert data.duration_s == round(window / 1e9, 6) > 0
    assert data.model.stopped_ns is not None and data.model.stopped_ns >= (data.model.last_ns or 0)

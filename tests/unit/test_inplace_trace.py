"""The in-place conversion recording shipped with the package (recorded in the lab on the
7.2 kernel with the conversion series, through fentry), read back: the report equals the
ground truth recorded beside it, page by page, conversion by conversion."""

from __future__ import annotations

import json
from pathlib import Path

import gmemtrace
from gmemtrace.events import Counter
from gmemtrace.sinks.report_table import to_table
from tests.kernel.test_trace_kernel import conversion_results, truth_conversions

DATA = Path(__file__).resolve().parents[1] / "data"
TRUTH = json.loads((DATA / "inplace.truth.json").read_text())
TRACE = gmemtrace.read_trace(gmemtrace.SHIPPED_TRACES["inplace"])


def test_it_was_recorded_in_place_through_fentry() -> None:
    header = TRACE.data.header
    assert header.kernel.startswith("7.2") and TRACE.complete
    assert str(header.probes["convert"]) == "fentry: fentry:kvm_gmem_ioctl"
    assert str(header.probes["host_fault_refused"]) == "fentry: fentry:kvm_gmem_fault_user_mapping"


def test_every_inode_equals_its_ground_truth_page_by_page() -> None:
    report = TRACE.report
    by_ino = {i["ino"]: i for i in report["inodes"]}
    assert set(by_ino) == {i["ino"] for i in TRUTH["inodes"]}
    for inode in TRUTH["inodes"]:
        got = by_ino[inode["ino"]]
        assert {c.value: got[c] for c in Counter} == inode["counts"]
        runs = [{k: r[k] for k in ("first", "count", "state")} for r in got["shareability"]]
        assert runs == inode["shareability"]
        assert conversion_results(report, inode["ino"]) == truth_conversions(inode)


def test_the_refused_conversion_names_the_page_in_use_and_the_noop_is_marked() -> None:
    conversions = TRACE.conversions
    refused = conversions[conversions["result_name"] == "EAGAIN"]
    assert refused["blocking_page"].tolist() == [TRUTH["facts"]["blocked"]["page"]] == [10]
    told = [op for i in TRUTH["inodes"] for op in i["ops"] if op.get("noop")]
    assert conversions["noop"].sum() == len(told) == 1


def test_the_report_table_shows_the_mixed_inodes_and_each_conversion() -> None:
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(to_table(TRACE.report))
    text = console.export_text()
    assert "0-7 private  8-15 shared  16-31 private" in text
    assert "EAGAIN (blocked by page 10)" in text and "(no change: already so)" in text

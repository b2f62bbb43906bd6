"""`gmemtrace explain` on recorded traces: every refusal joined to the op that caused it,
every memory fault exit to its cause and the conversion that answered it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gmemtrace
from gmemtrace.cli import main
from gmemtrace.model.explain import explain
from gmemtrace.report import model_of
from gmemtrace.tracefile import read_trace_file
from tests.explained import expected_causes, explained_causes

DATA = Path(__file__).parent.parent / "data"
WITH_TRUTH = {
    "mixed": (DATA / "mixed.trace", DATA / "mixed.truth.json"),
    "inplace": (Path(gmemtrace.SHIPPED_TRACES["inplace"]), DATA / "inplace.truth.json"),
}


def explained(trace: Path) -> list[dict]:
    data = read_trace_file(trace)
    return explain(model_of(data), data.header.start_ns)


@pytest.mark.parametrize("name", list(WITH_TRUTH))
def test_each_refusal_is_joined_to_the_op_that_caused_it(name: str) -> None:
    trace, truth = WITH_TRUTH[name]
    expected = expected_causes(json.loads(truth.read_text()))
    assert expected, "the workload met refusals"
    assert explained_causes(explained(trace)) == expected


def test_in_place_refusals_name_creation_and_conversion() -> None:
    """The lab's in-place recording: pages private from creation, and one made private in
    place by KVM_SET_MEMORY_ATTRIBUTES2, then touched."""
    items = explained(WITH_TRUTH["inplace"][0])
    by_what = {i["cause"]["what"] for i in items}
    assert by_what == {"creation", "conversion"}
    (converted,) = [i for i in items if i["cause"]["what"] == "conversion"]
    assert converted["cause"]["interface"] == "KVM_SET_MEMORY_ATTRIBUTES2"
    assert converted["cause"]["result"] == "ok" and converted["cause"]["to"] == "private"
    assert converted["cause"]["ts_ns"] < converted["ts_ns"]
    assert converted["who"]["pid"] != converted["cause"]["pid"], (
        "a child touched, the VMM converted"
    )


@pytest.mark.parametrize("tier", ["tracepoint", "kprobe"])
def test_memory_fault_exits_have_their_cause_and_answer(tier: str) -> None:
    """The software-protected VM's exits (6.12, lab): private frames with no guest_memfd
    behind them, made private by the VMM, answered by converting them to shared."""
    trace, truth = DATA / f"coco-{tier}.trace", DATA / f"coco-{tier}.truth.json"
    exits = json.loads(truth.read_text())["facts"]["memory_fault_exits"]
    items = explained(trace)
    assert [(i["who"]["gpa"], i["who"]["wants"]) for i in items] == [
        (e["gpa"], "private" if e["private"] else "shared") for e in exits
    ]
    for item in items:
        gfn = item["who"]["gpa"] // 4096
        assert item["page"] == {"ino": None, "page": None, "gfn": gfn, "state": "private"}
        cause, answer = item["cause"], item["answer"]
        assert cause["what"] == "conversion" and cause["to"] == "private"
        assert cause["interface"] == "KVM_SET_MEMORY_ATTRIBUTES" and cause["ino"] is None
        assert cause["first"] <= gfn < cause["first"] + cause["count"]
        assert (
            answer["to"] == "shared" and answer["first"] <= gfn < answer["first"] + answer["count"]
        )
        assert answer["ts_ns"] > item["ts_ns"] and answer["waited_ns"] > answer["latency_ns"]


def test_the_report_carries_the_same_explanations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = DATA / "mixed.trace"
    assert main(["report", str(trace), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["explanations"] == explained(trace)


def test_text_json_and_selection(capsys: pytest.CaptureFixture[str]) -> None:
    trace = str(DATA / "coco-kprobe.trace")
    assert main(["explain", trace, "--fault", "2", "--format", "json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["n"] == 2
    assert main(["explain", trace]) == 0
    text = capsys.readouterr().out
    assert "#1 memory fault exit" in text and "answered" in text and "the vCPU waited" in text
    assert main(["explain", trace, "--pid", "1"]) == 0
    assert "no refused fault" in capsys.readouterr().out
    assert main(["explain", trace, "--fault", "99"]) == 2
    assert "no refused fault or exit number 99" in capsys.readouterr().err

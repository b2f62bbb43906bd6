"""The benchmark suite runs end to end on a tiny size (timings are never asserted)."""

import json
from pathlib import Path

import pytest

from benchmarks import attach
from benchmarks.__main__ import configurations, main

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]


def test_bench_runs_every_part_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [
        "--pages",
        "128",
        "--rounds",
        "2",
        "--repeat",
        "1",
        "--decoder-events",
        "20000",
        "--quick",
        "--only",
        "gmemtrace record",
        "gmemtrace exporter",
        "perf stat",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["patterns"] == ["sequential", "random"]
    runs = {c["name"]: c["runs"] for c in doc["configurations"]}
    assert set(runs) - {"perf stat"} == {"untraced", "gmemtrace record", "gmemtrace exporter"}
    for pattern in doc["patterns"]:
        (record,) = runs["gmemtrace record"][pattern]
        assert record["lost"] == 0
        assert record["events"] >= 128 * 2, "every fault of the storm reached the file"
        assert record["cpu_s"] > 0 and record["rss_mb"] > 0
        (exporter,) = runs["gmemtrace exporter"][pattern]
        assert exporter["lost"] == 0
        # Every fault of the storm and its allocations (half the rounds allocate), as the
        # last scrape says: exactly, counted in the kernel.
        assert exporter["events"] == 128 * 2 + 128 + 128, exporter
    assert doc["decoder"]["decode_and_model_events_per_s"] > 0
    assert [r["intervals"] > 0 for r in doc["scale"]] == [True] * 5
    for mode in ("record, sequential", "counting (view, exporter), random"):
        profiled = doc["bpf_profile"][mode]
        assert profiled["host_faults"] == 128 * 2
        assert profiled["programs"]["page_fault_user"]["runs"] >= 128 * 2
        assert profiled["programs"]["page_fault_user"]["ns_per_run"] > 0
    assert doc["bpf_profile"]["floor"]["programs"]["page_fault_user"]["runs"] >= 128 * 2
    attachments = doc["attachments"]["faults_per_s"]
    assert set(attachments) == {"untraced", *attach.CONFIGS} and min(attachments.values()) > 0


def test_every_configuration_is_present_or_says_why_not() -> None:
    names = [c.name for c in configurations()]
    assert names[0] == "untraced" and len(names) == 9
    for config in configurations():
        assert config.absent == "" or "not installed" in config.absent

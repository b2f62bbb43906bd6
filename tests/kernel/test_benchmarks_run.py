"""The benchmark suite runs end to end on a tiny size (timings are never asserted)."""

import json
from pathlib import Path

import pytest

from benchmarks.__main__ import main

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kvm_ready")]


def test_bench_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["--pages", "64", "--rounds", "2", "--repeat", "2", "-o", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["configuration"] == "untraced"
    assert row["repetitions"] == 2
    assert row["faults_per_s_min"] <= row["faults_per_s_median"] <= row["faults_per_s_max"]

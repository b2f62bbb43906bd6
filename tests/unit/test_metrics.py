"""The exporter's metrics from recorded traces: what a scrape serves equals the ground truth;
counters never fall; a released guest_memfd stays for its grace period, then goes; reused
inode numbers are told apart; the Prometheus text parses back to the same table."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gmemtrace.errors import UsageError
from gmemtrace.events import Kind, make_events
from gmemtrace.fleet import Fleet
from gmemtrace.model.state import Model
from gmemtrace.sinks.metrics import BY_NAME, METRICS, NS, Samples
from gmemtrace.sinks.prometheus import FleetCollector, parse_listen
from gmemtrace.tracefile import read_trace_file

DATA = Path(__file__).parents[1] / "data"
HOUR = 3600 * NS


def fleet_of(trace: str, keep_ns: int = HOUR) -> tuple[Fleet, Model, Samples]:
    model, fleet = Model(), Fleet(keep_released_ns=keep_ns)
    model.apply(read_trace_file(DATA / trace).events)
    fleet.update(model, 0)
    return fleet, model, fleet.samples(model)


def per_ino(samples: Samples, metric: str, **labels: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, value in samples.values.get(metric, {}).items():
        found = dict(key)
        if found["ino"] and labels.items() <= found.items():
            out[int(found["ino"])] = out.get(int(found["ino"]), 0) + value
    return out


@pytest.mark.parametrize("name", ["mixed", "coco-kprobe", "coco-tracepoint"])
def test_a_scrape_equals_the_ground_truth(name: str) -> None:
    _, _, samples = fleet_of(f"{name}.trace")
    truth = json.loads((DATA / f"{name}.truth.json").read_text())
    served = {
        "host_faults": per_ino(samples, "gmemtrace_host_faults_total"),
        "host_faults_refused": per_ino(
            samples, "gmemtrace_host_faults_refused_total", reason="private"
        ),
        "guest_faults": per_ino(samples, "gmemtrace_guest_faults_total"),
        "pages_allocated": per_ino(samples, "gmemtrace_pages_allocated_total"),
        "pages_freed": per_ino(samples, "gmemtrace_pages_freed_total"),
        "hole_punches": per_ino(samples, "gmemtrace_hole_punches_total"),
        "conversion_attempts": per_ino(samples, "gmemtrace_conversions_total"),
        "conversions_to_shared": per_ino(
            samples, "gmemtrace_conversions_total", direction="to_shared", result="ok"
        ),
        "conversions_to_private": per_ino(
            samples, "gmemtrace_conversions_total", direction="to_private", result="ok"
        ),
    }
    for inode in truth["inodes"]:
        for counter, values in served.items():
            assert values.get(inode["ino"], 0) == inode["counts"][counter], (inode["ino"], counter)
        for state in ("shared", "private"):
            pages = sum(r["count"] for r in inode["shareability"] if r["state"] == state)
            assert per_ino(samples, "gmemtrace_pages", state=state)[inode["ino"]] == pages
    durations = samples.histograms["gmemtrace_conversion_duration_seconds"]
    attempts = sum(i["counts"]["conversion_attempts"] for i in truth["inodes"])
    assert sum(h.count for h in durations.values()) >= attempts


def test_the_prometheus_text_parses_back_to_the_table() -> None:
    fleet, model, _ = fleet_of("mixed.trace")
    registry = CollectorRegistry()
    registry.register(FleetCollector(lambda: fleet.samples(model)))
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    for metric in METRICS:
        base = metric.name.removesuffix("_total")
        assert base in families, metric.name
        assert families[base].type == {"info": "gauge"}.get(metric.kind, metric.kind)
    host = families["gmemtrace_host_faults"].samples
    assert {s.labels["comm"] for s in host} == {"gmemtrace"}
    assert all(set(s.labels) == {"ino", "gen", "pid", "comm"} for s in host)


def test_counters_never_fall_between_scrapes() -> None:
    fleet, model, first = fleet_of("mixed.trace")
    state = next(s for s in model.inodes.values() if s.counts["host_faults"] > 0)
    before = per_ino(first, "gmemtrace_host_faults_total")[state.ino]
    state.counts["host_faults"] -= 1  # a fault taken back when its refusal arrives later
    assert per_ino(fleet.samples(model), "gmemtrace_host_faults_total")[state.ino] == before


def _events(*rows: dict[str, Any]) -> np.ndarray:
    return make_events(*({"pid": 1, "tid": 1} | r for r in rows))


def test_a_released_guest_memfd_stays_for_its_grace_then_goes() -> None:
    model, fleet = Model(), Fleet(keep_released_ns=60 * NS)
    pid = os.getpid()  # alive: only the release event ends it
    model.apply(
        _events(
            {"ts_ns": 1, "pid": pid, "kind": Kind.CREATE, "ino": 7, "size_pages": 4},
            {"ts_ns": 2, "pid": pid, "kind": Kind.HOST_FAULT, "ino": 7, "first": 0, "count": 3},
            {"ts_ns": 3, "pid": pid, "kind": Kind.RELEASE, "ino": 7, "size_pages": 4},
        )
    )
    fleet.update(model, 10 * NS)
    released = per_ino(fleet.samples(model), "gmemtrace_released")
    assert released == {7: 1}
    assert per_ino(fleet.samples(model), "gmemtrace_host_faults_total") == {7: 3}
    fleet.update(model, 69 * NS)
    assert per_ino(fleet.samples(model), "gmemtrace_host_faults_total") == {7: 3}
    fleet.update(model, 70 * NS)
    assert per_ino(fleet.samples(model), "gmemtrace_host_faults_total") == {}
    assert model.inodes == {}, "forgotten by the model too: an agent must not grow"


def test_a_guest_memfd_of_a_process_gone_is_released() -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    model, fleet = Model(), Fleet(keep_released_ns=0)
    model.apply(_events({"ts_ns": 1, "pid": pid, "kind": Kind.CREATE, "ino": 9, "size_pages": 2}))
    fleet.update(model, NS)
    assert per_ino(fleet.samples(model), "gmemtrace_guest_memfd_info") == {}
    assert model.inodes == {} and model.per_pid == {}


def test_a_reused_inode_number_is_a_new_generation() -> None:
    model, fleet = Model(), Fleet(keep_released_ns=HOUR)
    pid = os.getpid()
    create = {"pid": pid, "kind": Kind.CREATE, "ino": 5, "size_pages": 2, "gmem_flags": 0}
    model.apply(_events(create | {"ts_ns": 1}))
    model.apply(
        _events(
            {"ts_ns": 2, "pid": pid, "kind": Kind.HOST_FAULT, "ino": 5, "first": 0, "count": 1},
            create | {"ts_ns": 3},
        )
    )
    fleet.update(model, 0)
    host = fleet.samples(model).values["gmemtrace_host_faults_total"]
    assert {dict(k)["gen"]: v for k, v in host.items()} == {"0": 1, "1": 0}


def test_every_metric_is_described() -> None:
    for metric in METRICS:
        assert metric.kind in ("counter", "gauge", "histogram", "info")
        assert metric.name.startswith("gmemtrace_") and metric.help
        assert metric.name.endswith("_total") == (metric.kind == "counter")
        assert metric.name.endswith("_info") == (metric.kind == "info")
    assert BY_NAME["gmemtrace_conversions_total"].labels[-2:] == ("direction", "result")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:80", ("::1", 80)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_listen_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["9464", ":9464", "localhost:9464", "1.2.3.4:99999", "1.2.3.4:x"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(UsageError, match="--listen"):
        parse_listen(text)


def _exporter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gmemtrace", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_listen_is_one_line_and_exit_2() -> None:
    result = _exporter("--listen", "everywhere")
    assert result.returncode == 2
    assert result.stderr.startswith("gmemtrace: error: --listen 'everywhere'")
    assert result.stderr.count("\n") == 1


def test_a_port_in_use_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _exporter("--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr == f"gmemtrace: error: --listen 127.0.0.1:{port}: address already in use\n"


def test_a_bad_otlp_url_is_one_line_and_exit_2() -> None:
    result = _exporter("--otlp", "collector:4318")
    assert result.returncode == 2
    assert result.stderr.startswith("gmemtrace: error: --otlp 'collector:4318'")
    assert result.stderr.count("\n") == 1


def test_the_readme_table_lists_every_metric() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    fleet = readme[readme.index("## Fleet") : readme.index("## Kernels")]
    rows = [line for line in fleet.splitlines() if line.startswith("| `gmemtrace_")]
    listed = {
        name for row in rows for name in re.findall(r"`(gmemtrace_[a-z_]+)`", row.split("|")[1])
    }
    assert listed == {m.name for m in METRICS}


def test_processes_that_only_forked_are_counted_then_forgotten_once_gone() -> None:
    """With no pid filter every fork of the machine reaches the model: the report counts
    them as one number, and a long-running agent forgets those that are gone."""
    model = Model()
    gone, living = 999_999_991, os.getpid()
    model.apply(
        make_events(
            {"pid": gone, "tid": gone, "kind": Kind.FORK, "ts_ns": 1, "comm": b"sh"},
            {"pid": living, "tid": living, "kind": Kind.EXEC, "ts_ns": 2, "comm": b"make"},
        )
    )
    assert model.pids == set() and model.seen_pids == {gone, living}
    model.forget_bystanders(lambda pid: pid == living)
    assert model.seen_pids == {living} and gone not in model.comms

"""The exporter against real servers: Debian's Prometheus scraping it every second, and an
OTLP/HTTP receiver decoding the protobuf the OpenTelemetry SDK pushes. What they store
must equal the built-in workload's ground truth, counter for counter."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gmemtrace.events import Counter
from tests.tracing import READY, SAFETY_S, Owned, leftovers_of_session, owned_bpf, still_loaded

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]
GMEMTRACE = [sys.executable, "-m", "gmemtrace"]
DASHBOARD = Path(__file__).parents[2] / "contrib" / "grafana-dashboard.json"

# Ground-truth counter -> the PromQL that reads it per inode from what Prometheus stored.
PROMQL = {
    "host_faults": "gmemtrace_host_faults_total",
    "host_faults_refused": 'gmemtrace_host_faults_refused_total{reason="private"}',
    "host_faults_beyond_eof": 'gmemtrace_host_faults_refused_total{reason="beyond_eof"}',
    "guest_faults": "gmemtrace_guest_faults_total",
    "pages_allocated": "gmemtrace_pages_allocated_total",
    "pages_freed": "gmemtrace_pages_freed_total",
    "hole_punches": "gmemtrace_hole_punches_total",
    "conversion_attempts": "sum by (ino) (gmemtrace_conversions_total)",
    "conversions_to_shared": 'gmemtrace_conversions_total{direction="to_shared",result="ok"}',
    "conversions_to_private": 'gmemtrace_conversions_total{direction="to_private",result="ok"}',
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body.decode()


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if result := check():
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


@contextmanager
def exporter(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A running exporter (attached: its ready line seen) and its /metrics URL; stopped with
    SIGTERM at the end, which must exit 0 and free every program and map it held."""
    port = free_port()
    proc = subprocess.Popen(
        [*GMEMTRACE, "exporter", "--listen", f"127.0.0.1:{port}", *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert READY in line, line
        owned = owned_bpf(proc.pid)
        assert owned.programs, "it holds the programs the loader child handed over"
        yield proc, f"http://127.0.0.1:{port}/metrics"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=SAFETY_S) == 0, proc.stderr.read()
        assert proc.stderr.read() == "", "nothing but the ready line"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert still_loaded(owned) == Owned()


def workload(tmp_path: Path, scenario: str, *args: str) -> dict[str, Any]:
    truth = tmp_path / f"{scenario}.truth.json"
    subprocess.run(
        [*GMEMTRACE, "workload", scenario, "-q", "-o", str(truth), *args], check=True, timeout=300
    )
    result: dict[str, Any] = json.loads(truth.read_text())
    return result


def expected(truths: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """{counter: {ino: value}} of the workloads' ground truths."""
    out: dict[str, dict[str, int]] = {name: {} for name in Counter}
    for truth in truths:
        for inode in truth["inodes"]:
            for name in Counter:
                out[name][str(inode["ino"])] = inode["counts"][name]
    return out


def shareability(truths: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    pages: dict[tuple[str, str], int] = {}
    for truth in truths:
        for inode in truth["inodes"]:
            for state in ("shared", "private", "unknown"):
                pages[(str(inode["ino"]), state)] = sum(
                    run["count"] for run in inode["shareability"] if run["state"] == state
                )
    return pages


# --- Prometheus ------------------------------------------------------------------


@contextmanager
def prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    """Debian's Prometheus on loopback, scraping `target` (host:port) every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed (make test installs Debian's package)")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: gmemtrace\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "Ready" in get(f"{url}/-/ready"), SAFETY_S, "Prometheus to be ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = json.loads(get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})))
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def stored(url: str, inodes: set[str]) -> dict[str, dict[str, int]]:
    """{counter: {ino: value}} as Prometheus stored them (0 where it has no series)."""
    out: dict[str, dict[str, int]] = {}
    for counter, promql in PROMQL.items():
        values = {r["metric"]["ino"]: int(float(r["value"][1])) for r in query(url, promql)}
        out[counter] = {ino: values.get(ino, 0) for ino in inodes}
    return out


def test_prometheus_stores_the_ground_truth(tmp_path: Path) -> None:
    with exporter("--keep-released", "600") as (_, metrics):
        target = metrics.removeprefix("http://").removesuffix("/metrics")
        with prometheus(tmp_path, target) as url:
            wait_for(lambda: query(url, 'up{job="gmemtrace"} == 1'), SAFETY_S, "the first scrape")
            # Three VMMs, one after another: the exporter follows each one that starts.
            truths = [
                workload(tmp_path, "mixed"),
                workload(tmp_path, "conversions"),
                workload(tmp_path, "fault-storm", "--pages", "1024", "--rounds", "4"),
            ]
            want = expected(truths)
            inodes = {ino for values in want.values() for ino in values}
            got = wait_for(
                lambda: (s := stored(url, inodes)) == want and s,
                SAFETY_S,
                f"Prometheus to store the ground truth (last seen {stored(url, inodes)}, "
                f"want {want})",
            )
            assert got == want
            pages = {
                (r["metric"]["ino"], r["metric"]["state"]): int(float(r["value"][1]))
                for r in query(url, "gmemtrace_pages")
            }
            assert {k: v for k, v in pages.items() if k[0] in inodes} == shareability(truths)
            info = {
                r["metric"]["ino"]: r["metric"] for r in query(url, "gmemtrace_guest_memfd_info")
            }
            for truth in truths:
                for inode in truth["inodes"]:
                    labels = info[str(inode["ino"])]
                    assert labels["size_pages"] == str(inode["size_pages"])
                    assert int(labels["flags"], 16) == inode["flags"]
                    assert labels["init"] == inode["init"]
                    assert labels["pid"] == str(truth["pid"])
            lost = query(url, "sum(gmemtrace_lost_events_total)")
            assert float(lost[0]["value"][1]) == 0
            # The dashboard shipped for these metrics names only metrics that exist.
            served = {family.name for family in text_string_to_metric_families(get(metrics))}
            names = dashboard_metric_names()
            assert len(names) >= 12
            for name in names:
                assert name.removesuffix("_total").removesuffix("_bucket") in served, name


def dashboard_metric_names() -> set[str]:
    """Every metric name in the Grafana dashboard's expressions (ours, and the process's)."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert exprs, "the dashboard has queries"
    return {n for e in exprs for n in re.findall(r"\b(?:gmemtrace|process)_[a-z_]+", e)}


# --- OpenTelemetry ------------------------------------------------------------------


class Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP metrics receiver: decodes each push with the protocol's own protobuf."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        self.pushes: list[Any] = []
        decode = ExportMetricsServiceRequest.FromString
        pushes = self.pushes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.headers["Content-Type"] == "application/x-protobuf"
                pushes.append(decode(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def pushed(push: Any) -> dict[str, dict[tuple[tuple[str, str], ...], Any]]:
    """{metric: {attributes: data point}} of one decoded push."""
    out: dict[str, dict[tuple[tuple[str, str], ...], Any]] = {}
    for resource in push.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                data = getattr(metric, metric.WhichOneof("data"))
                for point in data.data_points:
                    attrs = tuple(sorted((a.key, a.value.string_value) for a in point.attributes))
                    out.setdefault(metric.name, {})[attrs] = point
    return out


def test_otlp_pushes_the_ground_truth(tmp_path: Path) -> None:
    receiver = Receiver()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}/v1/metrics"
    try:
        with exporter("--otlp", endpoint, "--otlp-interval", "1") as _:
            truth = workload(tmp_path, "mixed")
            wait_for(lambda: receiver.pushes, SAFETY_S, "a periodic push")
        # SIGTERM made the last push: the totals up to the end.
        last = pushed(receiver.pushes[-1])
    finally:
        receiver.shutdown()
    assert len(receiver.pushes) >= 2
    for inode in truth["inodes"]:
        ino, counts = str(inode["ino"]), inode["counts"]
        assert value(last, ino, "gmemtrace_host_faults") == counts["host_faults"]
        refused = value(last, ino, "gmemtrace_host_faults_refused", reason="private")
        assert refused == counts["host_faults_refused"]
        assert value(last, ino, "gmemtrace_guest_faults") == counts["guest_faults"]
        assert value(last, ino, "gmemtrace_pages_allocated") == counts["pages_allocated"]
        assert value(last, ino, "gmemtrace_pages_freed") == counts["pages_freed"]
        assert value(last, ino, "gmemtrace_hole_punches") == counts["hole_punches"]
        assert value(last, ino, "gmemtrace_conversions") == counts["conversion_attempts"]
        durations = [
            p
            for a, p in last.get("gmemtrace_conversion_duration_seconds", {}).items()
            if dict(a)["ino"] == ino
        ]
        assert sum(p.count for p in durations) == counts["conversion_attempts"]
        for p in durations:
            assert sum(p.bucket_counts) == p.count


def value(push: dict[str, dict[Any, Any]], ino: str, name: str, **labels: str) -> int:
    """The sum of a pushed counter's points for one inode (and these attributes)."""
    return sum(
        int(p.as_int or p.as_double)
        for attrs, p in push.get(name, {}).items()
        if dict(attrs)["ino"] == ino and labels.items() <= dict(attrs).items()
    )


# --- faults and signals ---------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_ends_it_cleanly_even_while_attaching(sig: signal.Signals) -> None:
    """/metrics answers while the probes attach (gmemtrace_up 0); a signal then ends it
    with status 0, one ready line at most, and nothing of its own left: no process of its
    session (the loader child compiling the probes) holds a program after it ends."""
    port = free_port()
    proc = subprocess.Popen(
        [*GMEMTRACE, "exporter", "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        early = wait_for(lambda: get(f"http://127.0.0.1:{port}/metrics"), SAFETY_S, "/metrics")
        assert "gmemtrace_up 0.0" in early
        proc.send_signal(sig)  # while attaching
        assert proc.wait(timeout=SAFETY_S) == 0
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert "Traceback" not in err and len(err.splitlines()) <= 1, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert leftovers_of_session(proc.pid) == [], "its loader child ended with it"


def test_scrapes_while_vmms_start_and_exit(tmp_path: Path) -> None:
    """Every scrape answers, whole, while VMMs come and go under it."""
    answers: list[str] = []
    stop = threading.Event()
    with exporter("--keep-released", "0") as (_, metrics):

        def scrape() -> None:
            while not stop.is_set():
                answers.append(get(metrics))

        scraper = threading.Thread(target=scrape)
        scraper.start()
        try:
            for _ in range(3):
                truth = workload(tmp_path, "mixed", "--hold", "0.3")
        finally:
            stop.set()
            scraper.join()
        # Released with no grace: gone from the next scrapes.
        inodes = {str(i["ino"]) for i in truth["inodes"]}
        wait_for(
            lambda: not any(f'ino="{ino}"' in get(metrics) for ino in inodes),
            SAFETY_S,
            "the released guest_memfds to go",
        )
    assert len(answers) > 10
    for text in answers:
        names = {f.name for f in text_string_to_metric_families(text)}
        assert "gmemtrace_up" in names and "gmemtrace_host_faults" in names


def test_the_exporter_holds_no_bcc(tmp_path: Path) -> None:
    """The probes are compiled in a child: the exporter itself never maps libbcc or LLVM."""
    with exporter() as (proc, _):
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
    assert "libbcc" not in maps and "libLLVM" not in maps and "libclang" not in maps

"""A long run: the live view (or the exporter) on a steady fault rate in random order, its
collector's memory sampled each minute.

python -m benchmarks.soak [--minutes 60] [--rate 20000] [--via view|exporter]: writes
soak-results.json with the collector's RSS over time and what it counted (the view's
last interval; the exporter's /metrics after the storm). A benchmark, not a test: it
takes as long as it is told to.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from gmemtrace.kernel.procfs import gmem_mappings

GMEMTRACE = [sys.executable, "-m", "gmemtrace"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _scrape(ready: str) -> tuple[int, int]:
    """The exporter's host faults (it traces the storm alone) and its lost events, from
    /metrics (its URL is in its ready line)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    url = re.search(r"(http://\S+/metrics)", ready)
    if url is None:
        raise SystemExit(f"soak: the exporter named no URL: {ready}")
    with urllib.request.urlopen(url[1], timeout=10) as response:
        text = response.read().decode()
    faults = lost = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gmemtrace_host_faults_total":
                faults += int(sample.value)
            elif sample.name == "gmemtrace_lost_events_total":
                lost += int(sample.value)
    return faults, lost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=20_000, help="host faults per second")
    parser.add_argument("--pages", type=int, default=4096)
    parser.add_argument("--via", choices=("view", "exporter"), default="view")
    parser.add_argument("-o", "--output", type=Path, default=Path("soak-results.json"))
    args = parser.parse_args(argv)

    rounds = max(1, int(args.rate * args.minutes * 60 / args.pages))
    workload = subprocess.Popen(
        [
            *GMEMTRACE,
            "workload",
            "fault-storm",
            "--pages",
            str(args.pages),
            "--rounds",
            str(rounds),
            "--rate",
            str(args.rate),
            "--pattern",
            "random",
            "--wait-signal",
            # The exporter ends with the process it exports: a last scrape while it holds.
            *(("--hold", "6") if args.via == "exporter" else ()),
            "--quiet",
            "-o",
            str(args.output.with_suffix(".truth.json")),
        ],
    )
    while not gmem_mappings(workload.pid):
        time.sleep(0.05)
    tracer = [*GMEMTRACE, "--pid", str(workload.pid), "--json", "-i", "60"]
    if args.via == "exporter":
        tracer = [*GMEMTRACE, "exporter", "--pid", str(workload.pid), "--listen", "127.0.0.1:0"]
    view = subprocess.Popen(tracer, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert view.stderr is not None
    ready = view.stderr.readline()  # "... Ctrl-C to end.": every probe attached
    if not ready.rstrip().endswith("Ctrl-C to end."):
        raise SystemExit(f"soak: the {args.via} did not attach: {ready}{view.stderr.read()}")
    started = time.monotonic()
    scraped = (0, 0)
    workload.send_signal(signal.SIGUSR1)
    samples = []
    while workload.poll() is None:
        samples.append(
            {
                "minute": round((time.monotonic() - started) / 60, 2),
                "collector_rss_mb": round(rss_mb(view.pid), 1),
            }
        )
        print(json.dumps(samples[-1]), flush=True)
        deadline = time.monotonic() + 60
        while workload.poll() is None and time.monotonic() < deadline:
            time.sleep(2)
            if args.via == "exporter":
                with contextlib.suppress(OSError):  # the storm ended, the exporter with it
                    scraped = _scrape(ready)
    truth = json.loads(args.output.with_suffix(".truth.json").read_text())
    (inode,) = truth["inodes"]
    if args.via == "exporter":
        seen_faults, lost = scraped  # the last, while the workload held its memory
        view.communicate(timeout=120)
    else:
        out, _ = view.communicate(timeout=120)
        last = json.loads(out.strip().splitlines()[-1])
        seen = next(i for i in last["inodes"] if i["ino"] == inode["ino"])
        seen_faults, lost = seen["totals"]["host_faults"], last["lost_events"]
    result = {
        "minutes": round((time.monotonic() - started) / 60, 2),
        "faults_per_s_target": args.rate,
        "faults_per_s_measured": truth["facts"]["host_faults_per_s"],
        "host_faults_truth": inode["counts"]["host_faults"],
        "via": args.via,
        "host_faults_seen": seen_faults,
        "lost_events": lost,
        "collector_rss_mb": samples,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "collector_rss_mb"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A long run: the live view on a steady fault rate, its collector's memory sampled each minute.

python -m benchmarks.soak [--minutes 60] [--rate 20000]: writes soak-results.json
with the collector's RSS over time and what the view counted. A benchmark,
not a test: it takes as long as it is told to.
"""

from __future__ import annotations

import argparse
import json
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=20_000, help="host faults per second")
    parser.add_argument("--pages", type=int, default=4096)
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
            "--quiet",
            "-o",
            str(args.output.with_suffix(".truth.json")),
        ],
    )
    while not gmem_mappings(workload.pid):
        time.sleep(0.05)
    view = subprocess.Popen(
        [*GMEMTRACE, "--pid", str(workload.pid), "--json", "-i", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert view.stderr is not None
    ready = view.stderr.readline()  # "Tracing pid N... Ctrl-C to end.": every probe attached
    if not ready.rstrip().endswith("Ctrl-C to end."):
        raise SystemExit(f"soak: the view did not attach: {ready}{view.stderr.read()}")
    started = time.monotonic()
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
            time.sleep(1)
    out, _ = view.communicate(timeout=120)
    last = json.loads(out.strip().splitlines()[-1])
    truth = json.loads(args.output.with_suffix(".truth.json").read_text())
    (inode,) = truth["inodes"]
    seen = next(i for i in last["inodes"] if i["ino"] == inode["ino"])
    result = {
        "minutes": round((time.monotonic() - started) / 60, 2),
        "faults_per_s_target": args.rate,
        "faults_per_s_measured": truth["facts"]["host_faults_per_s"],
        "host_faults_truth": inode["counts"]["host_faults"],
        "host_faults_seen": seen["totals"]["host_faults"],
        "lost_events": last["lost_events"],
        "collector_rss_mb": samples,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "collector_rss_mb"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What each probe tier costs the traced process, compared in one boot of one kernel.

The same host fault storm on a shared guest_memfd runs untraced, then under each tier
that loads here, forced (`--tier`: the host faults come from kvm_gmem_fault_user_mapping
through fentry or a kprobe pair, or from exceptions:page_fault_user and the mapping trie
through the tracepoint tier), the view's mode (runs coalesced in the kernel). The storm
measures its own fault rate; configurations interleave over the repetitions. Under
emulation (the lab's QEMU) absolute times mean nothing: the ratio to the untraced rate
is what compares. Each forced load compiles under bcc (about a minute per load under the
lab's emulation: keep --repeat small there).

    python -m benchmarks.tiers [--pages N] [--rounds N] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gmemtrace.errors import GmemtraceError
from gmemtrace.kernel.procfs import gmem_mappings
from gmemtrace.tracer import load

TIERS = ("fentry", "kprobe", "tracepoint")


def storm_rate(tier: str | None, pages: int, rounds: int) -> float:
    """Host faults a second of one storm, under `tier` (None: untraced)."""
    with tempfile.TemporaryDirectory() as tmp:
        truth = Path(tmp) / "truth.json"
        workload = subprocess.Popen(
            [
                *(sys.executable, "-m", "gmemtrace", "workload", "fault-storm"),
                *("--pages", str(pages), "--rounds", str(rounds)),
                *("--wait-signal", "--quiet", "-o", str(truth)),
            ]
        )
        try:
            while not gmem_mappings(workload.pid):
                if workload.poll() is not None:
                    raise SystemExit("tiers: the storm ended before mapping its memory")
                time.sleep(0.01)
            source = load(tier).source([workload.pid], stream_hot=False) if tier else None
            try:
                os.kill(workload.pid, signal.SIGUSR1)
                while workload.poll() is None:
                    if source is not None:
                        source.poll()
                    time.sleep(0.05)
            finally:
                if source is not None:
                    source.close()
        finally:
            if workload.poll() is None:
                workload.kill()
            workload.wait()
        return float(json.loads(truth.read_text())["facts"]["host_faults_per_s"])


def measure(pages: int, rounds: int, repeat: int) -> dict[str, Any]:
    usable: list[str | None] = [None]
    skipped = {}
    for tier in TIERS:
        try:
            load(tier).program.cleanup()
            usable.append(tier)
        except GmemtraceError as err:
            skipped[tier] = str(err)
    rates: dict[str, list[float]] = {str(t or "untraced"): [] for t in usable}
    for _ in range(repeat):
        for tier in usable:
            rates[str(tier or "untraced")].append(storm_rate(tier, pages, rounds))
    base = statistics.median(rates["untraced"])
    return {
        "kernel": os.uname().release,
        "pages": pages,
        "rounds": rounds,
        "repeat": repeat,
        "faults_per_s": {name: statistics.median(v) for name, v in rates.items()},
        "of_untraced": {name: round(statistics.median(v) / base, 3) for name, v in rates.items()},
        "skipped": skipped,
    }


def table(result: dict[str, Any]) -> Table:
    out = Table(
        title=f"host fault storm per tier, kernel {result['kernel']} (median of "
        f"{result['repeat']}; {result['pages']} pages x {result['rounds']} rounds)",
        title_justify="left",
    )
    for column in ("configuration", "faults/s", "of untraced"):
        out.add_column(column, justify="left" if column == "configuration" else "right")
    for name, rate in result["faults_per_s"].items():
        out.add_row(name, f"{rate:,.0f}", f"{result['of_untraced'][name]:.3f}")
    for tier, why in result["skipped"].items():
        out.add_row(tier, "-", why[:60])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.pages, args.rounds, args.repeat)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        Console().print(table(result))


if __name__ == "__main__":
    main()

"""What each probe tier costs the traced process, compared in one boot of one kernel.

The same host fault storm on a shared guest_memfd, in sequential and in random order,
runs untraced, then under each tier that loads here, forced (`--tier`: the host faults
come from kvm_gmem_fault_user_mapping through fentry or a kprobe pair, or from
exceptions:page_fault_user and the mapping trie through the tracepoint tier), in the
view's mode (counted in the kernel). Each tier is loaded once (a bcc compile
takes about a minute under the lab's emulation) and each traced storm is added to it as
a target; its ratio is to the untraced storms run just before it. The storm measures its
own fault rate. Under emulation (the lab's QEMU) absolute times mean nothing: the ratios
inside one boot are what compares.

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
from gmemtrace.probes.program import ProbeProgram
from gmemtrace.tracer import load

TIERS = ("fentry", "kprobe", "tracepoint")
PATTERNS = ("sequential", "random")


def storm_rate(source: ProbeProgram | None, pattern: str, pages: int, rounds: int) -> float:
    """Host faults a second of one storm, traced by `source` (None: untraced)."""
    with tempfile.TemporaryDirectory() as tmp:
        truth = Path(tmp) / "truth.json"
        workload = subprocess.Popen(
            [
                *(sys.executable, "-m", "gmemtrace", "workload", "fault-storm"),
                *("--pages", str(pages), "--rounds", str(rounds), "--pattern", pattern),
                *("--wait-signal", "--quiet", "-o", str(truth)),
            ]
        )
        try:
            while not gmem_mappings(workload.pid):
                if workload.poll() is not None:
                    raise SystemExit("tiers: the storm ended before mapping its memory")
                time.sleep(0.01)
            if source is not None:
                source.add_targets([workload.pid])
            os.kill(workload.pid, signal.SIGUSR1)
            while workload.poll() is None:
                if source is not None:
                    source.poll()
                time.sleep(0.05)
        finally:
            if workload.poll() is None:
                workload.kill()
            workload.wait()
        return float(json.loads(truth.read_text())["facts"]["host_faults_per_s"])


def measure(pages: int, rounds: int, repeat: int) -> dict[str, Any]:
    """Per tier: `repeat` untraced storms of each order, then the tier loaded once (a bcc
    compile is a minute under emulation) and `repeat` traced ones, each new storm added
    as a target. The ratio compares a tier with the untraced runs just before it."""
    result: dict[str, Any] = {"kernel": os.uname().release, "pages": pages, "rounds": rounds}
    result |= {"repeat": repeat, "tiers": {}, "skipped": {}}
    for tier in TIERS:
        untraced = {
            p: [storm_rate(None, p, pages, rounds) for _ in range(repeat)] for p in PATTERNS
        }
        try:
            loaded = load(tier)
        except GmemtraceError as err:
            result["skipped"][tier] = str(err)
            continue
        source = loaded.source([], stream_hot=False)
        try:
            traced = {
                p: [storm_rate(source, p, pages, rounds) for _ in range(repeat)] for p in PATTERNS
            }
        finally:
            source.close()
        result["tiers"][tier] = {
            p: {
                "untraced": statistics.median(untraced[p]),
                "traced": statistics.median(traced[p]),
                "of_untraced": round(
                    statistics.median(traced[p]) / statistics.median(untraced[p]), 3
                ),
            }
            for p in PATTERNS
        }
        print(f"tiers: {tier}: {result['tiers'][tier]}", file=sys.stderr, flush=True)
    return result


def table(result: dict[str, Any]) -> Table:
    out = Table(
        title=f"host fault storm per tier, kernel {result['kernel']} (medians of "
        f"{result['repeat']}; {result['pages']} pages x {result['rounds']} rounds)",
        title_justify="left",
    )
    for column in ("tier", "order", "untraced faults/s", "traced faults/s", "of untraced"):
        out.add_column(column, justify="left" if column in ("tier", "order") else "right")
    for tier, orders in result["tiers"].items():
        for order, r in orders.items():
            out.add_row(
                tier,
                order,
                f"{r['untraced']:,.0f}",
                f"{r['traced']:,.0f}",
                f"{r['of_untraced']:.3f}",
            )
    for tier, why in result["skipped"].items():
        out.add_row(tier, "-", "-", "-", why[:60])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=16)
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

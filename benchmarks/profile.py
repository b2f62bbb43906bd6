"""Where the kernel-side time goes: each gmemtrace BPF program's run time per event.

The kernel times every BPF program run while kernel.bpf_stats_enabled is 1
(`bpftool prog show` then lists run_cnt and run_time_ns). This traces the
fault-storm in both modes, one record per event (a recording) and counted in the
kernel (the live view, the exporter), touching pages in order and at random, and
reports each hot program's nanoseconds per run and the BPF time per host
fault. The timing itself costs two clock reads per run: the same measurement
of a program that does nothing is given as the floor.
python -m benchmarks.profile [--pages N] [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.table import Table

from gmemtrace.kernel import headers
from gmemtrace.kernel.procfs import gmem_mappings
from gmemtrace.probes.bcc_backend import compile_text

STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
NOOP = "RAW_TRACEPOINT_PROBE(page_fault_user) { return 0; }"
HOT = ("page_fault_user", "mm_filemap_add_to_page_cache", "mm_filemap_delete_from_page_cache")


def _programs() -> dict[int, tuple[str, int, int]]:
    out = subprocess.run(
        ["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True
    ).stdout
    return {
        p["id"]: (p.get("name", ""), p.get("run_cnt", 0), p.get("run_time_ns", 0))
        for p in json.loads(out or "[]")
    }


@contextlib.contextmanager
def _bpf_stats() -> Iterator[None]:
    previous = STATS.read_text().strip()
    STATS.write_text("1")
    try:
        yield
    finally:
        STATS.write_text(previous)


def _storm(
    pages: int, rounds: int, attach: Callable[[int], Any], pattern: str = "sequential"
) -> dict[str, Any]:
    """Run a fault-storm with `attach(pid)`'s programs on it; their run statistics."""
    with tempfile.TemporaryDirectory() as tmp:
        truth = Path(tmp) / "truth.json"
        workload = subprocess.Popen(
            [
                *(sys.executable, "-m", "gmemtrace", "workload", "fault-storm"),
                *("--pages", str(pages), "--rounds", str(rounds), "--pattern", pattern),
                *("--wait-signal", "--quiet", "-o", str(truth)),
            ]
        )
        while not gmem_mappings(workload.pid):
            time.sleep(0.01)
        known = set(_programs())
        tracer = attach(workload.pid)
        try:
            with _bpf_stats():
                before = _programs()
                os.kill(workload.pid, signal.SIGUSR1)
                while workload.poll() is None:
                    poll = getattr(tracer, "poll", None)
                    if poll is not None:
                        poll()
                    time.sleep(0.02)
                after = _programs()
        finally:
            (tracer.close if hasattr(tracer, "close") else tracer.cleanup)()
        facts = json.loads(truth.read_text())
    programs = {}
    for pid, (name, runs, ns) in after.items():
        if pid in known or pid not in before:
            continue
        runs -= before[pid][1]
        ns -= before[pid][2]
        if runs:
            programs[name.removeprefix("raw_tracepoint__")] = {
                "runs": runs,
                "ns_per_run": round(ns / runs, 1),
                "ns": ns,
            }
    faults = sum(i["counts"]["host_faults"] for i in facts["inodes"])
    return {"host_faults": faults, "programs": programs}


def measure(pages: int = 16384, rounds: int = 8) -> dict[str, Any]:
    from gmemtrace import tracer

    found = headers.resolve()

    def noop(pid: int) -> Any:
        return compile_text(NOOP, found)

    result: dict[str, Any] = {"floor": _storm(pages, rounds, noop)}
    for pattern in ("sequential", "random"):
        for mode, stream_hot in (("record", True), ("counting (view, exporter)", False)):
            result[f"{mode}, {pattern}"] = _storm(
                pages, rounds, lambda pid, hot=stream_hot: tracer.load().source([pid], hot), pattern
            )
    return result


def table(result: dict[str, Any]) -> Table:
    floor = result["floor"]["programs"].get("page_fault_user", {}).get("ns_per_run", 0.0)
    out = Table(
        title="BPF time per event, fault-storm (kernel.bpf_stats_enabled; "
        f"a program that does nothing measures {floor:.0f} ns: the timing's own cost)",
        title_justify="left",
    )
    for column in ("mode", *HOT, "BPF ns per host fault", "less the timing"):
        out.add_column(column, justify="left" if column == "mode" else "right")
    for mode, found in result.items():
        if mode == "floor":
            continue
        programs = found["programs"]
        total = sum(p["ns"] for name, p in programs.items() if name in HOT)
        timing = floor * sum(p["runs"] for name, p in programs.items() if name in HOT)
        faults = max(found["host_faults"], 1)
        out.add_row(
            mode,
            *(
                f"{programs[name]['ns_per_run']:.0f} ns x {programs[name]['runs']:,}"
                if name in programs
                else "-"
                for name in HOT
            ),
            f"{total / faults:.0f}",
            f"{(total - timing) / faults:.0f}",
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--pages", type=int, default=16384)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    from rich.console import Console

    result = measure(args.pages, args.rounds)
    Console(width=160).print(table(result))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

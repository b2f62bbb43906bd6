"""The untraced baseline: host fault rate of the fault-storm workload on this machine.

Each repetition runs fault-storm in a fresh child process (so earlier runs leave
no warm state behind) and reads the rate from its ground truth. The traced
configurations of the performance issue are measured against this row.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def fault_storm_rate(pages: int, rounds: int) -> float:
    """Host faults per second of one fault-storm run, in its own process."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gmemtrace",
                "workload",
                "fault-storm",
                "--pages",
                str(pages),
                "--rounds",
                str(rounds),
                "-o",
                out.name,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        truth = json.loads(Path(out.name).read_text())
    return float(truth["facts"]["host_faults_per_s"])


def measure(pages: int, rounds: int, repeat: int) -> dict[str, Any]:
    rates = [fault_storm_rate(pages, rounds) for _ in range(repeat)]
    return {
        "configuration": "untraced",
        "workload": f"fault-storm {pages} pages x {rounds} rounds",
        "repetitions": repeat,
        "faults_per_s_median": statistics.median(rates),
        "faults_per_s_min": min(rates),
        "faults_per_s_max": max(rates),
        "ratio_to_untraced": 1.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--pages", type=int, default=16384, help="pages per round (default 64 MiB)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per configuration")
    parser.add_argument("-o", "--output", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args(argv)

    rows = [measure(args.pages, args.rounds, args.repeat)]
    machine = f"{platform.node()} {platform.release()} {platform.machine()}"
    args.output.write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")

    table = Table(title=f"gmemtrace benchmarks on {machine}", title_justify="left")
    for column in ("configuration", "workload", "faults/s (median)", "spread", "ratio"):
        table.add_column(
            column, justify="left" if column in ("configuration", "workload") else "right"
        )
    for row in rows:
        table.add_row(
            row["configuration"],
            row["workload"],
            f"{row['faults_per_s_median']:,.0f}",
            f"{row['faults_per_s_min']:,.0f} .. {row['faults_per_s_max']:,.0f}",
            f"{row['ratio_to_untraced']:.3f}",
        )
    Console(width=140).print(table)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

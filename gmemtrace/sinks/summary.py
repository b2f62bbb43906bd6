"""The summary printed when a view ends, and the demo's verdict against the ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from gmemtrace.collector import Collector
from gmemtrace.model.frame import ViewInfo
from gmemtrace.report import build_report
from gmemtrace.sinks.report_table import to_table


def summary(
    console: Console, collector: Collector, info: ViewInfo, start_ns: int, truth: Path | None = None
) -> None:
    report = build_report(collector.model, info.kernel, info.probes, start_ns)
    console.print(to_table(report))
    if truth is not None:
        console.print(truth_verdict(report, json.loads(truth.read_text())))


def truth_verdict(report: dict[str, Any], truth: dict[str, Any]) -> Text:
    """One line: does what gmemtrace saw equal what the workload did?"""
    seen = {i["ino"]: i for i in report["inodes"]}
    wrong = [
        f"inode {i['ino']} {key} {seen.get(i['ino'], {}).get(key)} != {value}"
        for i in truth["inodes"]
        for key, value in i["counts"].items()
        if seen.get(i["ino"], {}).get(key) != value
    ]
    if not wrong:
        checked = sum(len(i["counts"]) for i in truth["inodes"])
        return Text(
            f"every count above equals the workload's ground truth "
            f"({len(truth['inodes'])} inodes, {checked} counters checked)",
            style="bold green",
        )
    return Text(f"differs from the ground truth: {'; '.join(wrong[:4])}", style="bold red")

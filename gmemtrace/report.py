"""The report: a model (live, or replayed from a trace file) as JSON, CSV or a table.

The JSON form is a contract for scripts:
{"trace": {"kernel", "duration_s", "lost_events", "pids", "complete", "problem"},
 "probes": {event: attach point},
 "inodes": [{"ino", "size_pages", "flags", "init", "shared_pages", "private_pages",
             "unknown_pages", "host_faults", "host_faults_refused", "host_faults_beyond_eof",
             "guest_faults",
             "pages_allocated", "pages_freed", "hole_punches", "conversions_to_shared",
             "conversions_to_private", "conversion_attempts"}],
 "conversions": [{"ts_ns", "pid", "tid", "ino", "first", "count", "to", "interface",
                  "result", "latency_ns"}],
 "memory_fault_exits": {"count", "exits": [{"ts_ns", "pid", "tid", "gpa", "size",
                                            "private", "ino", "page"}]}}
Shareability page counts are as of the end of the trace; the rest are totals.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gmemtrace.events import COUNTERS
from gmemtrace.model.state import Model
from gmemtrace.tracefile import TraceData, read_trace_file

INODE_FIELDS = (
    "ino",
    "size_pages",
    "flags",
    "init",
    "shared_pages",
    "private_pages",
    "unknown_pages",
    *COUNTERS,
)


def replay(data: TraceData) -> Model:
    """Rebuild the model from a trace file's events, exactly as the live collector did."""
    model = Model()
    model.apply(data.events)
    return model


def build_report(
    model: Model,
    kernel: str,
    probes: dict[str, str],
    start_ns: int,
    complete: bool = True,
    problem: str = "",
) -> dict[str, Any]:
    end_ns = model.last_ns or start_ns
    # An inode number used twice (the first guest_memfd released) appears twice,
    # in order of creation, told apart by "generation".
    states = [*model.retired, *(model.inodes[ino] for ino in sorted(model.inodes))]
    seen: dict[int, int] = {}
    inodes = []
    for state in states:
        seen[state.ino] = seen.get(state.ino, -1) + 1
        inodes.append(state.summary() | state.counts | {"generation": seen[state.ino]})
    return {
        "trace": {
            "kernel": kernel,
            "duration_s": round(max(end_ns - start_ns, 0) / 1e9, 6),
            "lost_events": model.lost_events,
            # where the counts are low: [from s, to s, events lost] since the start
            "lost_windows": [
                [round(max(a - start_ns, 0) / 1e9, 3), round((b - start_ns) / 1e9, 3), n]
                for a, b, n in model.lost_windows
            ],
            "pids": sorted(model.pids),
            "complete": complete,
            "problem": problem,
        },
        "probes": probes,
        "inodes": inodes,
        "conversions": model.conversions,
        # KVM_EXIT_MEMORY_FAULT: the guest wanted a range private (or shared) that is not;
        # ino/page: the guest_memfd page the gpa maps to, if a memslot binds it to one.
        "memory_fault_exits": {
            "count": len(model.memory_fault_exits),
            "exits": model.memory_fault_exits,
        },
    }


def report_file(path: Path) -> dict[str, Any]:
    data = read_trace_file(path)
    model = replay(data)
    return build_report(
        model,
        data.header.kernel,
        data.header.probes,
        data.header.start_ns,
        data.complete,
        data.problem,
    )


def to_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=INODE_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(report["inodes"])
    return out.getvalue()


def to_table(report: dict[str, Any]) -> RenderableType:
    trace = report["trace"]
    title = (
        f"gmemtrace report: kernel {trace['kernel']}, {trace['duration_s']:.3f} s, "
        f"pids {', '.join(map(str, trace['pids'])) or '-'}"
    )
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0)
    )
    columns = (
        ("ino", "ino"),
        ("pages", "size_pages"),
        ("init", "init"),
        ("shared", "shared_pages"),
        ("priv", "private_pages"),
        ("unkn", "unknown_pages"),
        ("host", "host_faults"),
        ("ref", "host_faults_refused"),
        ("guest", "guest_faults"),
        ("alloc", "pages_allocated"),
        ("free", "pages_freed"),
        ("punch", "hole_punches"),
        ("conv", "conversion_attempts"),
    )
    for header, _ in columns:
        table.add_column(header, justify="left" if header == "init" else "right", no_wrap=True)
    for inode in report["inodes"]:
        table.add_row(*(str(inode[key]) for _, key in columns))
    lines: list[RenderableType] = [table]
    lost = trace["lost_events"]
    lines.append(Text(f"lost events: {lost}", style="bold red" if lost else "dim"))
    for first, last, n in trace.get("lost_windows", []):
        lines.append(
            Text(
                f"  {n} lost between {first:.3f} s and {last:.3f} s: counts there are low",
                style="red",
            )
        )
    exits = report.get("memory_fault_exits", {}).get("exits", [])
    if exits:
        lines.append(Text(f"memory fault exits: {len(exits)}", style="yellow"))
        for e in exits:
            where = f"ino {e['ino']} page {e['page']}" if e["ino"] else "no guest_memfd"
            kind = "private" if e["private"] else "shared"
            lines.append(Text(f"  gpa {e['gpa']:#x} +{e['size']:#x} {kind} ({where})"))
    if not trace["complete"]:
        lines.append(Text(f"incomplete trace: {trace['problem']}", style="bold yellow"))
    return Group(*lines)

"""A report (gmemtrace/report.py) as a rich table or CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gmemtrace.events import TABULATED, result_name
from gmemtrace.model.state import Share
from gmemtrace.report import INODE_FIELDS
from gmemtrace.sinks.palette import ERROR_STYLE, OK_STYLE, STATE_COLOUR


def to_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=INODE_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(report["inodes"])
    return out.getvalue()


def processes_line(trace: dict[str, Any]) -> str:
    """`qemu-system-x86[1234], python3[1240]; 37 other processes seen`: a name and its pid
    as one word, so a line too long for the screen breaks between processes, never inside."""
    named = [f"{p['comm'] or '?'}[{p['pid']}]".replace(" ", "_") for p in trace["processes"]]
    line = "processes: " + (", ".join(named) or "none touched a guest_memfd")
    if others := trace["other_processes_seen"]:
        line += f"; {others} other process{'es' if others != 1 else ''} seen"
    return line


MAX_CONVERSION_LINES = 20


def conversion_line(c: dict[str, Any]) -> Text:
    """`  ino 12 pages 8+8 -> private EAGAIN (blocked by page 10) 41.2us KVM_SET_...`"""
    where = f"ino {c['ino']}" if c["ino"] else "unbound gpa"
    text = Text(f"  {where} pages {c['first']}+{c['count']} -> {c['to']} ")
    text.append(result_name(c["result"]), style=OK_STYLE if c["result"] == 0 else ERROR_STYLE)
    if c.get("blocking_page") is not None:
        text.append(f" (blocked by page {c['blocking_page']})", style=ERROR_STYLE)
    if c.get("noop"):
        text.append(" (no change: already so)", style="dim")
    text.append(f" {c['latency_ns'] / 1000:.1f}us {c['interface']}", style="dim")
    return text


def to_table(report: dict[str, Any]) -> RenderableType:
    trace = report["trace"]
    title = Text(f"gmemtrace report: kernel {trace['kernel']}, {trace['duration_s']:.3f} s")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0))
    columns = (
        ("ino", "ino"),
        ("pages", "size_pages"),
        ("init", "init"),
        ("shared", "shared_pages"),
        ("priv", "private_pages"),
        ("unkn", "unknown_pages"),
        *((c.header, c.value) for c in TABULATED),
    )
    for header, _ in columns:
        table.add_column(header, justify="left" if header == "init" else "right", no_wrap=True)
    for inode in report["inodes"]:
        table.add_row(*(str(inode[key]) for _, key in columns))
    lines: list[RenderableType] = [title, Text(processes_line(trace)), table]
    lost = trace["lost_events"]
    lines.append(Text(f"lost events: {lost}", style="bold red" if lost else "dim"))
    for first, last, n in trace.get("lost_windows", []):
        lines.append(
            Text(
                f"  {n} lost between {first:.3f} s and {last:.3f} s: counts there are low",
                style="red",
            )
        )
    for inode in report["inodes"]:
        runs = inode.get("shareability", [])
        if len(runs) > 1:  # a mixed inode: its pages, run by run
            text = Text(f"ino {inode['ino']}: ", style="bold")
            for run in runs:
                last = run["first"] + run["count"] - 1
                where = str(run["first"]) if last == run["first"] else f"{run['first']}-{last}"
                text.append(f"{where} ")
                text.append(run["state"], style=STATE_COLOUR[Share(run["state"])])
                text.append("  ")
            lines.append(text)
    conversions = report.get("conversions", [])
    if conversions:
        lines.append(Text(f"conversions: {len(conversions)}", style="bold"))
        for c in conversions[-MAX_CONVERSION_LINES:]:
            lines.append(conversion_line(c))
        if len(conversions) > MAX_CONVERSION_LINES:
            lines.append(Text(f"  ({len(conversions) - MAX_CONVERSION_LINES} earlier not shown: "
                              "--format json has them all)", style="dim"))  # fmt: skip
    exits = report.get("memory_fault_exits", {}).get("exits", [])
    if exits:
        lines.append(Text(f"memory fault exits: {len(exits)}", style="yellow"))
        for e in exits:
            where = f"ino {e['ino']} page {e['page']}" if e["ino"] else "no guest_memfd"
            kind = "private" if e["private"] else "shared"
            lines.append(Text(f"  gpa {e['gpa']:#x} +{e['size']:#x} {kind} ({where})"))
    explained = report.get("explanations", [])
    if explained:
        lines.append(
            Text(f"refused faults and memory fault exits: {len(explained)} (why: `gmemtrace "
                 "explain` on a recording, `e` in the live view)", style="dim")
        )  # fmt: skip
    if not trace["complete"]:
        lines.append(Text(f"incomplete trace: {trace['problem']}", style="bold yellow"))
    return Group(*lines)

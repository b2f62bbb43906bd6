"""Ground truth as a rich table: one row per guest_memfd inode."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gmemtrace.events import TABULATED, result_name
from gmemtrace.model.state import Share
from gmemtrace.sinks.palette import STATE_COLOUR

COLUMNS = tuple((c.short, c.value) for c in TABULATED)


def _conversion_results(inode: dict[str, Any]) -> str:
    results: dict[str, int] = {}
    for op in inode["ops"]:
        if op["op"] == "convert":
            key = f"{op['interface']}:{result_name(-op['errno'])}"
            results[key] = results.get(key, 0) + 1
    return "; ".join(f"{key} x{n}" for key, n in results.items())


def truth_table(truth: dict[str, Any]) -> RenderableType:
    table = Table(
        title=f"ground truth: scenario {truth['scenario']} (pid {truth['pid']}, "
        f"{(truth['ended_ns'] - truth['started_ns']) / 1e9:.3f} s)",
        title_justify="left",
    )
    table.add_column("inode", justify="right", style="bold")
    table.add_column("flags")
    table.add_column("pages", justify="right")
    table.add_column("init")
    for header, _ in COLUMNS:
        table.add_column(header, justify="right")
    for inode in truth["inodes"]:
        table.add_row(
            str(inode["ino"]),
            "|".join(inode["flag_names"]) or "0",
            str(inode["size_pages"]),
            Text(inode["init"], style=STATE_COLOUR[Share(inode["init"])]),
            *(str(inode["counts"][key]) for _, key in COLUMNS),
        )
    lines: list[RenderableType] = [table]
    for inode in truth["inodes"]:
        if conv := _conversion_results(inode):
            lines.append(Text(f"inode {inode['ino']} conversions: {conv}"))
    if truth["facts"]:
        facts = ", ".join(f"{k}={v}" for k, v in truth["facts"].items())
        lines.append(Text(f"facts: {facts}"))
    return Group(*lines)

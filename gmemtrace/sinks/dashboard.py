"""The live view's sections as rich renderables: header, shareability strips, fault rates,
recent events, latencies. The app (sinks/app.py) lays them out on the screen.

Pure functions of the model and its rates: they read no clock and call no kernel, so a
test renders them from a recorded trace at any size.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from gmemtrace.events import COUNTER_TABLE
from gmemtrace.kernel.uapi import decode_gmem_flags
from gmemtrace.model.rates import Rates
from gmemtrace.model.state import InodeState, Model, Share
from gmemtrace.sinks.strip import ShareabilityStrip, pages_per_cell

SORT_KEYS = {c.short: c.name for c in COUNTER_TABLE if c.rated}
HOT_WINDOW_NS = 2_000_000_000
VMM_NAMES = ("qemu", "cloud-hyperviso", "firecracker", "crosvm", "fc_vcpu", "gmemtrace")


@dataclass
class ViewInfo:
    """What the dashboard shows besides the model: set by the live command (or a test)."""

    kernel: str
    probes: dict[str, str]
    targets: str
    elapsed_s: float
    now_ns: int  # the model's clock (CLOCK_MONOTONIC) at this frame
    sort: str = "host"
    waiting_for: str = ""  # targets named but no guest_memfd activity seen yet
    note: str = ""  # e.g. "replaying a recorded trace"


def tier_summary(probes: dict[str, str]) -> str:
    tiers = Counter(v.split(":")[0] for v in probes.values())
    missing = [e for e, v in probes.items() if v == "unavailable"]
    text = ", ".join(f"{t} x{n}" for t, n in tiers.items() if t != "unavailable")
    return text + (f"; unavailable: {', '.join(missing)}" if missing else "")


def _size(pages: int) -> str:
    size = float(pages * 4096)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.4g} {unit}"
        size /= 1024
    return f"{size} TiB"


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}" if value >= 10 or value == 0 else f"{value:.1f}"


@dataclass
class Dashboard:
    model: Model
    rates: Rates
    info: ViewInfo

    def ranked_inodes(self) -> list[InodeState]:
        key = SORT_KEYS.get(self.info.sort, "host_faults")

        def activity(state: InodeState) -> tuple[float, int, int]:
            rate = self.rates.inodes.get(state.ino, {}).get(key, 0.0)
            return (rate, state.counts[key], state.ino)

        return sorted(self.model.inodes.values(), key=activity, reverse=True)

    # --- sections -------------------------------------------------------------
    def header(self, width: int) -> list[Text]:
        lost = self.model.lost_events
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("gmemtrace", style="bold")
        text.append(f"  {self.info.kernel}  ")
        text.append(f"{self.info.elapsed_s:6.1f}s  ", style="cyan")
        text.append(f"{_rate(self.rates.events_per_s)} events/s  ")
        text.append(f"lost {lost}", style="bold white on red" if lost else "dim")
        if lost:
            refused = self.model.lost_refused
            text.append(f" (ring full {lost - refused}, refused with room {refused})", style="red")
        if self.info.note:
            text.append(f"  {self.info.note}", style="yellow")
        second = Text(no_wrap=True, overflow="ellipsis")
        second.append(f"targets: {self.info.targets}", style="bold")
        vmms = sorted(
            {c for c in self.model.comms.values() if c.startswith(VMM_NAMES)}
            - {c for c in self.model.comms.values() if c in self.info.targets}
        )
        if vmms:
            second.append(f"  VMM: {', '.join(vmms)}")
        second.append(f"  probes: {tier_summary(self.info.probes)}", style="dim")
        return [text, second]

    def strip_lines(
        self, state: InodeState, width: int, rows: int = 1, stretch: bool = False
    ) -> list[RenderableType]:
        flags = "|".join(decode_gmem_flags(state.flags)) if state.flags is not None else "flags ?"
        slots = self.model.slots_of(state.ino)
        per_cell = pages_per_cell(state.size_pages, width * rows)
        label = Text(no_wrap=True, overflow="ellipsis")
        label.append(f"ino {state.ino}", style="bold")
        label.append(f"  {state.size_pages} pages ({_size(state.size_pages)})  {flags}")
        label.append(f"  init {state.init.value}")
        if slots:
            label.append(f"  slot {','.join(map(str, slots))}")
        label.append(
            f"  shared {state.pages(Share.SHARED)} private {state.pages(Share.PRIVATE)}"
            f"  resident {state.resident.count(True)}  {per_cell} pages/cell",
            style="dim",
        )
        refused = {
            r.page for r in self.model.refused if r.ino == state.ino and r.reason == "private"
        }
        hot_since = self.info.now_ns - HOT_WINDOW_NS
        return [label, ShareabilityStrip(state, refused, hot_since, rows, stretch)]

    def inode_table(self, inodes: list[InodeState], rows: int) -> Table:
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), expand=False, show_edge=False)
        for name in (
            "inode",
            "host/s",
            "ref/s",
            "guest/s",
            "alloc/s",
            "free/s",
            "conv/s",
            "host",
            "refused",
        ):
            table.add_column(name, justify="right", no_wrap=True)
        for state in inodes[:rows]:
            r = self.rates.inodes.get(state.ino, {})
            refused_style = "bold red" if state.counts["host_faults_refused"] else ""
            table.add_row(
                str(state.ino),
                _rate(r.get("host_faults", 0)),
                Text(_rate(r.get("host_faults_refused", 0)), style=refused_style),
                _rate(r.get("guest_faults", 0)),
                _rate(r.get("pages_allocated", 0)),
                _rate(r.get("pages_freed", 0)),
                _rate(r.get("conversion_attempts", 0)),
                str(state.counts["host_faults"]),
                Text(str(state.counts["host_faults_refused"]), style=refused_style),
            )
        return table

    def thread_table(self, rows: int, keep: Callable[[int], bool] = lambda pid: True) -> Table:
        """The busiest threads (of the processes `keep` accepts)."""
        key = SORT_KEYS.get(self.info.sort, "host_faults")
        ranked = sorted(
            ((k, v) for k, v in self.model.per_thread.items() if keep(k[0])),
            key=lambda kv: (self.rates.threads.get(kv[0], {}).get(key, 0.0), kv[1][key]),
            reverse=True,
        )
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False)
        for name in ("pid", "tid", "comm", "host/s", "ref/s", "guest/s", "alloc/s", "host"):
            table.add_column(name, justify="left" if name == "comm" else "right", no_wrap=True)
        for (pid, tid), counts in ranked[:rows]:
            r = self.rates.threads.get((pid, tid), {})
            table.add_row(
                str(pid),
                str(tid),
                self.model.comms.get(pid, "?")[:15],
                _rate(r.get("host_faults", 0)),
                _rate(r.get("host_faults_refused", 0)),
                _rate(r.get("guest_faults", 0)),
                _rate(r.get("pages_allocated", 0)),
                str(counts["host_faults"]),
            )
        return table

    def recent(self, rows: int) -> list[Text]:
        start = self.model.first_ns or 0
        entries: list[tuple[int, Text]] = []
        for c in self.model.conversions[-rows:]:
            result = "ok" if c.result == 0 else _errno(c.result)
            where = f"ino {c.ino}" if c.ino else "unbound gpa"
            text = Text(
                f"  +{(c.ts_ns - start) / 1e9:.3f}s pid {c.pid} convert {where} "
                f"pages {c.first}+{c.count} -> {c.to} ",
                no_wrap=True,
                overflow="ellipsis",
            )
            text.append(result, style="green" if c.result == 0 else "yellow")
            text.append(f" {c.latency_ns / 1000:.1f}us {c.interface}")
            entries.append((c.ts_ns, text))
        for r in self.model.refused[-rows:]:
            text = Text(
                f"  +{(r.ts_ns - start) / 1e9:.3f}s pid {r.pid} ",
                no_wrap=True,
                overflow="ellipsis",
            )
            beyond = r.reason == "beyond_eof"
            text.append("fault beyond the end" if beyond else "refused fault", style="bold red")
            text.append(f" ino {r.ino} page {r.page} (SIGBUS) at {r.address:#x}")
            entries.append((r.ts_ns, text))
        entries.sort(key=lambda e: e[0])
        return [t for _, t in entries[-rows:]]

    def histograms(self, rows: int, width: int) -> list[Text]:
        lines: list[Text] = []
        for event, hist in sorted(self.model.latency.items()):
            if not hist or len(lines) >= rows:
                continue
            lines.append(Text(f"{event} latency", style="bold"))
            top = max(hist.values())
            for slot in sorted(hist)[: max(rows - len(lines), 0)]:
                low, high = 1 << slot, (1 << (slot + 1)) - 1
                bucket = f" {_ns(low):>5}..{_ns(high):<5} {hist[slot]:>6} "
                room = min(30, max(1, width - len(bucket)))  # one line, whatever the width
                bar = "#" * max(1, int(hist[slot] / top * room))
                lines.append(Text(bucket + bar, no_wrap=True, overflow="crop"))
        return lines[:rows]


def _ns(ns: int) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.0f}{unit}"
    return f"{ns}ns"


def _errno(result: int) -> str:
    code = -result
    names = {1: "EPERM", 11: "EAGAIN", 14: "EFAULT", 22: "EINVAL", 25: "ENOTTY", 12: "ENOMEM"}
    return names.get(code, os.strerror(code) if code > 0 else str(result))

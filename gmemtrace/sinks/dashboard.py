"""The live view's sections as rich renderables: header, shareability strips, fault rates,
recent events, latencies. The app (sinks/app.py) lays them out on the screen.

Pure functions of the model and its rates: they read no clock and call no kernel, so a
test renders them from a recorded trace at any size.
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from gmemtrace.events import Counter, Probe, result_name
from gmemtrace.kernel.uapi import decode_gmem_flags
from gmemtrace.model.frame import Frame, ViewInfo
from gmemtrace.model.rates import Rates
from gmemtrace.model.state import InodeState, Model, Refused, Share
from gmemtrace.sinks.palette import ERROR_STYLE, OK_STYLE
from gmemtrace.sinks.strip import ShareabilityStrip, pages_per_cell

HOT_WINDOW_NS = 2_000_000_000
VMM_NAMES = ("qemu", "cloud-hyperviso", "firecracker", "crosvm", "fc_vcpu", "gmemtrace")
# The rate columns of the inode and thread tables (their totals follow).
INODE_RATES = (
    Counter.HOST_FAULTS,
    Counter.HOST_FAULTS_REFUSED,
    Counter.GUEST_FAULTS,
    Counter.PAGES_ALLOCATED,
    Counter.PAGES_FREED,
    Counter.CONVERSION_ATTEMPTS,
)
THREAD_RATES = INODE_RATES[:4]


def tier_summary(probes: dict[str, Probe]) -> str:
    tiers = Tally(p.tier for p in probes.values() if p.tier is not None)
    missing = [e for e, p in probes.items() if p.tier is None]
    text = ", ".join(f"{t.value} x{n}" for t, n in tiers.items())
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


@dataclass(frozen=True)
class Dashboard:
    """The sections of one frame (model/frame.py), as rich renderables."""

    frame: Frame

    @property
    def model(self) -> Model:
        return self.frame.model

    @property
    def rates(self) -> Rates:
        return self.frame.rates

    @property
    def info(self) -> ViewInfo:
        return self.frame.info

    # --- sections -------------------------------------------------------------
    def header(self, width: int) -> list[Text]:
        lost = self.model.lost_events
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("gmemtrace", style="bold")
        text.append(f"  {self.info.kernel}  ")
        text.append(f"{self.frame.elapsed_s:6.1f}s  ", style="cyan")
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
            r.page for r in self.model.refused if r.ino == state.ino and r.reason is Refused.PRIVATE
        }
        hot_since = self.frame.now_ns - HOT_WINDOW_NS
        return [label, ShareabilityStrip(state, refused, hot_since, rows, stretch)]

    def inode_table(self, rows: int) -> Table:
        """The frame's busiest guest_memfds: rates a second, then host and refused totals."""
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), expand=False, show_edge=False)
        names = ["inode", *(f"{c.header}/s" for c in INODE_RATES), "host", "refused"]
        for name in names:
            table.add_column(name, justify="right", no_wrap=True)
        for state in self.frame.inodes[:rows]:
            r = self.rates.inodes.get(state.ino, {})
            refused = state.counts[Counter.HOST_FAULTS_REFUSED]
            style = "bold red" if refused else ""
            table.add_row(
                str(state.ino),
                *(Text(_rate(r.get(c, 0)), style=style if c.refusal else "") for c in INODE_RATES),
                str(state.counts[Counter.HOST_FAULTS]),
                Text(str(refused), style=style),
            )
        return table

    def thread_table(self, rows: int) -> Table:
        """The frame's busiest threads."""
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False)
        names = ["pid", "tid", "comm", *(f"{c.header}/s" for c in THREAD_RATES), "host"]
        for name in names:
            table.add_column(name, justify="left" if name == "comm" else "right", no_wrap=True)
        for (pid, tid), counts in self.frame.threads[:rows]:
            r = self.rates.threads.get((pid, tid), {})
            table.add_row(
                str(pid),
                str(tid),
                self.model.comms.get(pid, "?")[:15],
                *(_rate(r.get(c, 0)) for c in THREAD_RATES),
                str(counts[Counter.HOST_FAULTS]),
            )
        return table

    def recent(self, rows: int) -> list[Text]:
        start = self.model.first_ns or 0
        entries: list[tuple[int, Text]] = []
        for c in self.model.conversions[-rows:]:
            result = result_name(c.result)
            where = f"ino {c.ino}" if c.ino else "unbound gpa"
            text = Text(
                f"  +{(c.ts_ns - start) / 1e9:.3f}s pid {c.pid} convert {where} "
                f"pages {c.first}+{c.count} -> {c.to.value} ",
                no_wrap=True,
                overflow="ellipsis",
            )
            text.append(result, style=OK_STYLE if c.result == 0 else ERROR_STYLE)
            if c.blocking_page is not None:
                text.append(f" (page {c.blocking_page} in use)", style=ERROR_STYLE)
            if c.noop:
                text.append(" (no change)", style="dim")
            text.append(f" {c.latency_ns / 1000:.1f}us {c.interface}")
            entries.append((c.ts_ns, text))
        for r in self.model.refused[-rows:]:
            text = Text(
                f"  +{(r.ts_ns - start) / 1e9:.3f}s pid {r.pid} ",
                no_wrap=True,
                overflow="ellipsis",
            )
            beyond = r.reason is Refused.BEYOND_EOF
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

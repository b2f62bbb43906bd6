"""A guest_memfd inode's shareability map as one line of cells, scaled to the width it gets.

Each cell covers `pages_per_cell` pages: its colour is the state most of them
are in (shared, private, unknown), its glyph how many are resident, a grey
background marks pages the host faulted recently, and a red cross a refused
fault.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from gmemtrace.model.state import InodeState, Share

STATE_COLOUR = {Share.SHARED: "green", Share.PRIVATE: "magenta", Share.UNKNOWN: "grey50"}
HOT_BACKGROUND = "grey30"
FULL, PARTIAL, EMPTY, REFUSED = "█", "▄", "░", "✗"


def cell_coverage(
    runs: Iterable[tuple[int, int, Any]], chosen: Callable[[Any], bool], per_cell: int, cells: int
) -> np.ndarray:
    """Pages per cell whose run value satisfies `chosen`."""
    out = np.zeros(cells, dtype=np.int64)
    for first, end, value in runs:
        if not chosen(value) or first >= end:
            continue
        c0, c1 = first // per_cell, (end - 1) // per_cell
        if c0 == c1:
            out[c0] += end - first
            continue
        out[c0] += (c0 + 1) * per_cell - first
        out[c0 + 1 : c1] += per_cell
        out[c1] += end - c1 * per_cell
    return out


def pages_per_cell(size_pages: int, width: int) -> int:
    return max(1, -(-size_pages // max(width, 1)))


@dataclass
class ShareabilityStrip:
    state: InodeState
    refused_pages: set[int]
    hot_since_ns: int  # faults at or after this time are "hot"

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(8, max(8, min(options.max_width, self.state.size_pages or 8)))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        size = self.state.size_pages
        if size == 0:
            yield Text("(size unknown: no page seen yet)", style="dim")
            return
        per_cell = pages_per_cell(size, options.max_width)
        cells = -(-size // per_cell)
        in_cell = np.full(cells, per_cell)
        in_cell[-1] = size - per_cell * (cells - 1)
        shareability = list(self.state.shareability.runs())
        states = list(Share)
        by_state = [
            cell_coverage(
                [(a, b, True) for a, b, (known, _) in shareability if known is state],
                bool,
                per_cell,
                cells,
            )
            for state in states
        ]
        dominant = np.argmax(np.stack(by_state), axis=0)
        resident = cell_coverage(self.state.resident.runs(), bool, per_cell, cells)
        hot_since = self.hot_since_ns

        def is_hot(last_fault_ns: int) -> bool:
            return bool(last_fault_ns) and last_fault_ns >= hot_since

        hot = cell_coverage(self.state.last_fault_ns.runs(), is_hot, per_cell, cells)
        refused = np.zeros(cells, dtype=bool)
        for page in self.refused_pages:
            if page < size:
                refused[page // per_cell] = True
        for i in range(cells):
            colour = STATE_COLOUR[states[int(dominant[i])]]
            if refused[i]:
                glyph, style = REFUSED, Style(color="red", bold=True)
            else:
                glyph = FULL if resident[i] == in_cell[i] else PARTIAL if resident[i] else EMPTY
                style = Style(color=colour)
            if hot[i]:
                style += Style(bgcolor=HOT_BACKGROUND, bold=True)
            yield Segment(glyph, style)
        yield Segment.line()


def legend() -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for state, colour in STATE_COLOUR.items():
        text.append("■", style=colour)
        text.append(f"{state.value} ")
    text.append(f" {FULL}resident {PARTIAL}partly {EMPTY}not ")
    text.append(" ", style=Style(bgcolor=HOT_BACKGROUND))
    text.append("hot ")
    text.append(REFUSED, style="bold red")
    text.append("refused")
    return text

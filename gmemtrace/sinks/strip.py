"""A guest_memfd inode's shareability map as one line of cells, scaled to the width it gets.

Each cell covers `pages_per_cell` pages: its colour is the state most of them
are in (shared, private, unknown), its glyph how many are resident, a grey
background marks pages the host faulted recently, and a red cross a refused
fault. Without colour (NO_COLOR) the glyph carries the state too: its letter,
upper case when resident, lower case when partly, a punctuation mark when not;
recent faults are underlined.
"""

from __future__ import annotations

import os
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
from gmemtrace.sinks.palette import STATE_COLOUR

HOT_BACKGROUND = "grey30"
FULL, PARTIAL, EMPTY, REFUSED = "█", "▄", "░", "✗"
# Without colour: (resident, partly, not) per state.
PLAIN_GLYPHS = {
    Share.SHARED: ("S", "s", "."),
    Share.PRIVATE: ("P", "p", ":"),
    Share.UNKNOWN: ("U", "u", "_"),
}


def no_colour() -> bool:
    """NO_COLOR is set (https://no-color.org: any value; Textual asks only that it is there)."""
    return "NO_COLOR" in os.environ


def cell_glyph(
    state: Share, resident: int, pages: int, refused: bool, plain: bool
) -> tuple[str, Style]:
    """A cell of `pages` pages, `resident` of them in memory, mostly in `state`."""
    if refused:
        return REFUSED, Style(color="red", bold=True)
    which = 0 if resident == pages else 1 if resident else 2
    if plain:
        return PLAIN_GLYPHS[state][which], Style()
    return (FULL, PARTIAL, EMPTY)[which], Style(color=STATE_COLOUR[state])


def page_glyph(state: Share, resident: bool, refused: bool, plain: bool) -> tuple[str, Style]:
    return cell_glyph(state, int(resident), 1, refused, plain)


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
    rows: int = 1  # lines to draw it on: more rows, finer cells
    stretch: bool = False  # a guest_memfd smaller than the line: each page that many cells wide

    @staticmethod
    def rows_for(size_pages: int, width: int, most: int) -> int:
        """Lines the map takes at one page a cell, up to `most`."""
        return max(1, min(most, -(-size_pages // max(width, 1))))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(8, max(8, min(options.max_width, self.state.size_pages or 8)))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        size = self.state.size_pages
        if size == 0:
            yield Text("(size unknown: no page seen yet)", style="dim")
            return
        width = options.max_width
        per_cell = pages_per_cell(size, width * self.rows)
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
        repeat = max(1, min(8, width // size)) if self.stretch and per_cell == 1 else 1
        plain = no_colour() or console.no_color
        hot_style = Style(underline=True) if plain else Style(bgcolor=HOT_BACKGROUND, bold=True)
        for i in range(cells):
            glyph, style = cell_glyph(
                states[int(dominant[i])], int(resident[i]), int(in_cell[i]), bool(refused[i]), plain
            )
            if hot[i]:
                style += hot_style
            if refused[i] and repeat > 1:  # one refused page drawn wide: the cross once
                state = states[int(dominant[i])]
                filler, filler_style = cell_glyph(state, int(resident[i]), 1, False, plain)
                if hot[i]:
                    filler_style += hot_style
                yield Segment(glyph, style)
                yield Segment(filler * (repeat - 1), filler_style)
            else:
                yield Segment(glyph * repeat, style)
            if (i + 1) % width == 0 and i + 1 < cells:
                yield Segment.line()
        yield Segment.line()


def legend() -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    if no_colour():
        for state, (full, partly, empty) in PLAIN_GLYPHS.items():
            text.append(f"{full}{partly}{empty} {state.value}  ")
        text.append(f"(resident, partly, not)  {REFUSED}refused  ")
        text.append("hot", style=Style(underline=True))
        return text
    for state, colour in STATE_COLOUR.items():
        text.append("■", style=colour)
        text.append(f"{state.value} ")
    text.append(f" {FULL}resident {PARTIAL}partly {EMPTY}not ")
    text.append(" ", style=Style(bgcolor=HOT_BACKGROUND))
    text.append("hot ")
    text.append(REFUSED, style="bold red")
    text.append("refused")
    return text

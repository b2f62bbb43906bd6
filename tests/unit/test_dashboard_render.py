"""The dashboard rendered from a recorded trace at fixed sizes: content and styles, no snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from rich.segment import Segment

import gmemtrace
from gmemtrace.model.rates import RateTracker
from gmemtrace.model.state import Model
from gmemtrace.sinks.dashboard import Dashboard, ViewInfo
from gmemtrace.sinks.strip import FULL, REFUSED, ShareabilityStrip

TRACE = Path(__file__).resolve().parents[1] / "data" / "mixed.trace"


@pytest.fixture(scope="module")
def trace() -> gmemtrace.Trace:
    return gmemtrace.read_trace(TRACE)


def dashboard(trace: gmemtrace.Trace, **info: object) -> Dashboard:
    tracker = RateTracker()
    tracker.sample(Model(), 0.0)
    rates = tracker.sample(trace.model, 2.0)  # everything in the trace, over 2 s
    view = ViewInfo(
        trace.data.header.kernel,
        trace.data.header.probes,
        "pid 42 (qemu)",
        2.0,
        trace.model.last_ns or 0,
    )
    for key, value in info.items():
        setattr(view, key, value)
    return Dashboard(trace.model, rates, view)


def render(renderable: object, width: int, height: int) -> tuple[str, list[Segment]]:
    console = Console(
        width=width, height=height, force_terminal=True, color_system="truecolor", record=True
    )
    segments = list(console.render(renderable, console.options.update(height=height)))
    console.print(renderable)
    return console.export_text(), segments


@pytest.mark.parametrize(("width", "height"), [(80, 24), (250, 50)])
def test_dashboard_fits_and_shows_every_inode(
    trace: gmemtrace.Trace, width: int, height: int
) -> None:
    text, _ = render(dashboard(trace), width, height)
    lines = text.splitlines()
    assert len(lines) <= height
    assert all(len(line) <= width for line in lines)
    for ino in trace.model.inodes:
        assert f"ino {ino}" in text
    assert "6.18" in text and "lost 0" in text
    assert "shared" in text and "private" in text and "refused" in text  # legend
    assert "pages/cell" in text or width < 100


def test_rates_are_per_second_over_the_interval(trace: gmemtrace.Trace) -> None:
    text, _ = render(dashboard(trace), 250, 50)
    shared = max(trace.model.inodes.values(), key=lambda s: s.counts["host_faults"])
    row = next(line for line in text.splitlines() if line.strip().startswith(str(shared.ino)))
    cells = row.split()
    assert cells[1] == str(shared.counts["host_faults"] // 2)  # host/s over 2 s
    assert cells[-2] == str(shared.counts["host_faults"])  # the total


def test_strip_colours_by_shareability_and_marks_refusals(trace: gmemtrace.Trace) -> None:
    private = next(s for s in trace.model.inodes.values() if s.init.value == "private")
    refused = {r.page for r in trace.model.refused if r.ino == private.ino}
    _, segments = render(ShareabilityStrip(private, refused, 0), 40, 3)
    glyphs = [s for s in segments if s.text.strip()]
    assert len(glyphs) == private.size_pages  # 16 pages fit: one page per cell
    crosses = [i for i, s in enumerate(glyphs) if s.text == REFUSED]
    assert crosses == sorted(refused)
    assert all(
        s.style and s.style.color and s.style.color.name == "magenta"
        for s in glyphs
        if s.text != REFUSED
    )


def test_strip_scales_many_pages_into_the_width() -> None:
    model = Model()
    state = model.inode(7, 0)
    state.grow(1 << 20)
    state.resident.assign(0, 1 << 19, True)
    _, segments = render(ShareabilityStrip(state, set(), 0), 64, 3)
    glyphs = [s.text for s in segments if s.text.strip()]
    assert len(glyphs) == 64
    assert glyphs[:32] == [FULL] * 32 and FULL not in glyphs[32:]


def test_waiting_state_instead_of_an_empty_screen() -> None:
    view = ViewInfo("6.18", {}, "comm qemu", 1.0, 0, waiting_for="comm qemu")
    text, _ = render(Dashboard(Model(), RateTracker().latest, view), 80, 24)
    assert "waiting for guest_memfd activity from comm qemu" in text


def test_lost_events_are_highlighted(trace: gmemtrace.Trace) -> None:
    board = dashboard(trace)
    board.model.lost_events = 12
    try:
        _, segments = render(board, 120, 40)
    finally:
        board.model.lost_events = 0
    lost = next(s for s in segments if "lost 12" in s.text)
    assert lost.style is not None and lost.style.bgcolor is not None

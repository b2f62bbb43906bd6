"""The live view (the Textual app) over a recorded trace, at fixed sizes, driven by Textual's
pilot: what the screen says and how it is styled, no snapshots. The kernel-driven keys are
in tests/kernel/test_live_app_kernel.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from rich.console import Console
from rich.segment import Segment
from textual.geometry import Region

import gmemtrace
from gmemtrace.capture import Capture, StopRule
from gmemtrace.model.frame import Mode, ViewInfo
from gmemtrace.model.state import Model
from gmemtrace.sinks.app import SPARK, Help, LiveApp, Maps, PageMap, sparkline
from gmemtrace.sinks.console import make_console
from gmemtrace.sinks.strip import FULL, PLAIN_GLYPHS, REFUSED, ShareabilityStrip
from gmemtrace.tracefile import TraceData, read_trace_file
from gmemtrace.view import LiveView

TRACE = Path(__file__).resolve().parents[1] / "data" / "mixed.trace"


@pytest.fixture(scope="module")
def trace() -> gmemtrace.Trace:
    return gmemtrace.read_trace(TRACE)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_app(
    size: tuple[int, int],
    check: Callable[[LiveApp, object], Awaitable[None]],
    lost: int = 0,
    path: Path = TRACE,
    **info: object,
) -> None:
    """The app over the whole recorded trace, its rates over 2 s: `check(app, pilot)`."""
    data = read_trace_file(path)
    clock = Clock()
    view_info = ViewInfo(data.header.kernel, data.header.probes, "pid 42 (qemu)", **info)  # type: ignore[arg-type]
    with replaying(data, speed=1e12) as capture:
        model = capture.collector.model
        view = LiveView(
            capture, Mode.LIVE, 2.0, view_info, make_console(), clock=clock,
            clock_ns=lambda: model.last_ns or 0,
        )  # fmt: skip
        view.begin()
        clock.now = 2.0  # the first interval: everything in the trace, over 2 s

        async def drive() -> None:
            app = view.make_app()
            async with app.run_test(size=size) as pilot:
                await pilot.pause(0.3)
                model.lost_events = lost
                app.redraw()
                await pilot.pause(0.1)
                await check(app, pilot)

        asyncio.run(drive())


def replaying(data: TraceData, speed: float) -> Capture:
    """A capture of the recorded trace played at `speed`, which goes on once played out."""
    stop = StopRule(handle_signals=False, follow_targets=False)
    return Capture(replay=data, replay_speed=speed, stop=stop)


def screen_text(app: LiveApp) -> str:
    """The screen as text: every leaf widget's lines where the layout put them."""
    width, height = app.size
    grid = [[" "] * width for _ in range(height)]
    for widget in app.screen.walk_children():
        region = widget.region
        if widget.children or not region.area or not widget.display:
            continue
        for y, strip in enumerate(widget.render_lines(Region(0, 0, region.width, region.height))):
            for x, char in enumerate(strip.text[: region.width]):
                if 0 <= region.y + y < height and 0 <= region.x + x < width:
                    grid[region.y + y][region.x + x] = char
    return "\n".join("".join(row).rstrip() for row in grid)


@pytest.mark.parametrize("size", [(80, 24), (160, 50), (250, 60)])
def test_the_view_fills_the_screen_and_shows_every_inode(
    trace: gmemtrace.Trace, size: tuple[int, int]
) -> None:
    async def check(app: LiveApp, pilot: object) -> None:
        text = screen_text(app)
        lines = text.splitlines()
        assert len(lines) == size[1]
        for ino in trace.model.inodes:
            assert f"ino {ino}" in text
        assert "6.18" in text and "lost 0" in text
        assert "shared" in text and "private" in text and "refused" in text  # legend
        assert "q quit" in lines[-1], "the keys, at the bottom"
        maps = app.query_one(Maps)
        assert maps.size.width == size[0] and maps.size.height >= 6
        if size[1] >= 50:  # room: history charts and page ranges too
            assert "host/s" in text and "(creation flags)" in text

    run_app(size, check)


def test_rates_are_per_second_over_the_interval(trace: gmemtrace.Trace) -> None:
    async def check(app: LiveApp, pilot: object) -> None:
        text = screen_text(app)
        shared = max(trace.model.inodes.values(), key=lambda s: s.counts["host_faults"])
        row = next(line for line in text.splitlines() if line.strip().startswith(str(shared.ino)))
        cells = row.split()
        assert cells[1] == str(shared.counts["host_faults"] // 2)  # host/s over 2 s
        assert cells[7] == str(shared.counts["host_faults"])  # the total

    run_app((250, 50), check)


def test_lost_events_are_highlighted() -> None:
    async def check(app: LiveApp, pilot: object) -> None:
        header = app.query_one("#header")
        strips = header.render_lines(Region(0, 0, header.size.width, header.size.height))
        lost = next(seg for strip in strips for seg in strip if "lost 12" in seg.text)
        assert lost.style is not None and lost.style.bgcolor is not None

    run_app((120, 40), check, lost=12)


def test_the_waiting_state_instead_of_an_empty_screen() -> None:
    data = read_trace_file(TRACE)
    view_info = ViewInfo("6.18", {}, "comm qemu", waiting_for="comm qemu")
    with replaying(data, speed=0.0) as capture:  # nothing arrives
        view = LiveView(capture, Mode.LIVE, 1.0, view_info, make_console())
        view.begin()

        async def drive() -> None:
            app = view.make_app()
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause(0.2)
                assert "waiting for guest_memfd activity from comm qemu" in screen_text(app)

        asyncio.run(drive())


def render(renderable: object, width: int, height: int) -> list[Segment]:
    console = Console(width=width, height=height, force_terminal=True, color_system="truecolor")
    return list(console.render(renderable, console.options.update(height=height)))


def test_strip_colours_by_shareability_and_marks_refusals(trace: gmemtrace.Trace) -> None:
    private = next(s for s in trace.model.inodes.values() if s.init.value == "private")
    refused = {r.page for r in trace.model.refused if r.ino == private.ino}
    glyphs = [s for s in render(ShareabilityStrip(private, refused, 0), 40, 3) if s.text.strip()]
    assert len(glyphs) == private.size_pages  # 16 pages fit: one page per cell
    crosses = [i for i, s in enumerate(glyphs) if s.text == REFUSED]
    assert crosses == sorted(refused)
    assert all(
        s.style and s.style.color and s.style.color.name == "magenta"
        for s in glyphs
        if s.text != REFUSED
    )


def test_without_colour_the_glyphs_carry_the_state(
    trace: gmemtrace.Trace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    for state in trace.model.inodes.values():
        refused = {r.page for r in trace.model.refused if r.ino == state.ino}
        glyphs = "".join(s.text for s in render(ShareabilityStrip(state, refused, 0), 80, 3))
        letters = set(PLAIN_GLYPHS[state.init])
        assert set(glyphs.strip()) <= letters | {REFUSED}, state.ino
        assert glyphs.strip(), state.ino


def test_a_big_guest_memfd_gets_more_lines_and_a_small_one_wider_cells() -> None:
    model = Model()
    big = model.inode(7, 0)
    big.grow(64 * 4)
    segments = render(ShareabilityStrip(big, set(), 0, rows=4), 64, 8)
    assert "".join(s.text for s in segments).count("\n") == 4  # one page a cell, 4 lines
    small = model.inode(8, 0)
    small.grow(8)
    cells = "".join(s.text for s in render(ShareabilityStrip(small, set(), 0, stretch=True), 64, 3))
    assert len(cells.strip()) == 64  # 8 pages, 8 cells each


def test_strip_scales_many_pages_into_the_width() -> None:
    model = Model()
    state = model.inode(7, 0)
    state.grow(1 << 20)
    state.resident.assign(0, 1 << 19, True)
    glyphs = [s.text for s in render(ShareabilityStrip(state, set(), 0), 64, 3) if s.text.strip()]
    assert len(glyphs) == 64
    assert glyphs[:32] == [FULL] * 32 and FULL not in glyphs[32:]


def test_sparklines_scale_to_their_maximum() -> None:
    (line,) = sparkline([0, 1, 2, 4, 8], 8)
    assert line == "   " + " ▁▂▄█"  # right-aligned: the newest value last
    top, bottom = sparkline([8, 4], 2, rows=2)
    assert top == "█ " and bottom == "██"


def test_a_resize_lays_the_view_out_again() -> None:
    async def check(app: LiveApp, pilot: object) -> None:
        maps = app.query_one(Maps)
        assert maps.size.width == 80
        await pilot.resize_terminal(200, 60)  # type: ignore[attr-defined]
        await pilot.pause(0.3)  # type: ignore[attr-defined]
        assert maps.size.width == 200
        text = screen_text(app)
        assert len(text.splitlines()) == 60
        assert "pid" in text and "tid" in text, "wide enough: the threads' table beside"

    run_app((80, 24), check)


STORM = Path(gmemtrace.__file__).parent / "data" / "fault-storm.trace"
SPARK_CELLS = "".join(c for c in SPARK if c.strip())


@pytest.mark.parametrize("path", [TRACE, STORM], ids=["three-guest_memfds", "one"])
@pytest.mark.parametrize("size", [(80, 24), (160, 50), (250, 70)])
def test_every_size_is_used_and_no_line_wraps(path: Path, size: tuple[int, int]) -> None:
    """At least 90% of the rows carry content (the maps' history charts take what is
    left); table headers whole; a latency bucket on one line; each history chart right
    beside its label and number."""

    async def check(app: LiveApp, pilot: object) -> None:
        lines = screen_text(app).splitlines()
        used = sum(1 for line in lines if line.strip())
        assert used >= 0.9 * size[1], "\n".join(lines)
        assert all(len(line) <= size[0] for line in lines)
        header = next(line for line in lines if line.lstrip().startswith("inode "))
        for column in ("host/s", "ref/s", "guest/s", "host", "refused"):
            assert column in header.split(), header
        buckets = [line for line in lines if re.search(r"\d+(ns|us|ms|s)\.\.\d", line)]
        assert buckets and all("#" in line for line in buckets), "each bucket, bar and all"
        beside = re.compile(rf"host/s +\d+ [{SPARK_CELLS}]")
        assert any(beside.search(line) for line in lines), "a chart beside its number"

    run_app(size, check, path=path)


@pytest.mark.parametrize("screen", ["enter", "question_mark"], ids=["page-map", "help"])
def test_q_quits_from_every_screen_and_escape_goes_back(screen: str) -> None:
    async def check(app: LiveApp, pilot: object) -> None:
        await pilot.press(screen)  # type: ignore[attr-defined]
        assert isinstance(app.screen, (PageMap, Help))
        await pilot.press("escape")  # type: ignore[attr-defined]
        assert not isinstance(app.screen, (PageMap, Help))
        await pilot.press(screen)  # type: ignore[attr-defined]
        await pilot.press("q")  # type: ignore[attr-defined]
        await pilot.pause(0.1)  # type: ignore[attr-defined]
        assert not app.is_running, "q ended the app, not just the screen"

    run_app((120, 40), check)

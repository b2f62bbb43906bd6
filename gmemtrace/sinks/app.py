"""The live view on a terminal: a Textual app over the dashboard's rich renderables.

It fills the screen and re-lays itself out on resize: the shareability maps take
the room they can use (more guest_memfds, finer cells), the rate tables and the
conversion log the rest. Each guest_memfd has a minute of history (host, refused
and guest faults per second), the header the events per second. Keys: q (or
Ctrl-C) quits with the summary, p pauses the display while collection goes on,
s cycles the sort, arrows and Enter open a guest_memfd's map at page resolution,
/ filters by pid or comm, ? shows them. It draws the frames the view loop
(gmemtrace/view.py) makes; it attaches nothing and computes no ranking of its own.
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, RichLog, Static

from gmemtrace.events import Counter
from gmemtrace.model.explain import explain
from gmemtrace.model.frame import SORTS, Frame, ViewInfo
from gmemtrace.model.rates import Rates
from gmemtrace.model.state import InodeState, Model, Share
from gmemtrace.sinks.dashboard import Dashboard
from gmemtrace.sinks.explain_text import to_text
from gmemtrace.sinks.palette import STATE_COLOUR
from gmemtrace.sinks.strip import ShareabilityStrip, legend, no_colour, page_glyph


class Feed(Protocol):
    """What the app reads from the view loop that runs it (gmemtrace/view.py: LiveView)."""

    info: ViewInfo
    pump_s: float
    sort: Counter

    @property
    def model(self) -> Model: ...

    def frame(self, sort: Counter, wanted: str) -> Frame: ...

    def redraw_due(self) -> bool: ...

    def command_output(self) -> bytes: ...


HISTORY_S = 60  # samples kept per guest_memfd: one per rate interval
SPARK = " ▁▂▃▄▅▆▇█"
HISTORY_COUNTERS = (
    ("host", Counter.HOST_FAULTS),
    ("ref", Counter.HOST_FAULTS_REFUSED),
    ("guest", Counter.GUEST_FAULTS),
)
PAGES_PER_ROW = 64
MAX_STRIP_ROWS = 16  # a map's lines at most, however large the guest_memfd
MAX_CHART_ROWS = 60  # a history chart's lines at most: the screen's spare rows go there
WIDE = 150  # columns from which the threads' table fits beside the inodes'

HELP = """\
[b]gmemtrace live view[/b]

  [b]q[/b], Ctrl-C   quit, with the summary
  [b]p[/b]           pause the display (collection goes on)
  [b]s[/b]           cycle the sort: {sorts}
  [b]Up/Down[/b]     select a guest_memfd
  [b]Enter[/b]       its map at page resolution (Escape goes back)
  [b]e[/b]           why each fault was refused, each memory fault exit (Escape back)
  [b]/[/b]           filter by pid or comm (empty: no filter)
  [b]?[/b]           this help (Escape closes it)

Maps: one cell per page range; its colour is the state most pages are in
(green shared, magenta private, grey unknown), its glyph how many are resident
(█ all, ▄ some, ░ none); without colour (NO_COLOR) the glyph is the state's
letter (S shared, P private, U unknown: upper case resident, lower case
partly; . : _ not). ✗ a refused fault; a grey background (underline without
colour): faulted in the last 2 s.
"""


def sparkline(values: list[float], width: int, rows: int = 1) -> list[str]:
    """The last `width` values as block characters on `rows` lines (top first), scaled to
    their own maximum; a value above zero shows at least one eighth of a line."""
    shown = values[-width:]
    top = max(shown, default=0)
    steps = (len(SPARK) - 1) * rows
    levels = [max(1, round(v / top * steps)) if v > 0 and top > 0 else 0 for v in shown]
    pad = " " * (width - len(shown))
    lines = []
    for row in range(rows):
        floor = (rows - 1 - row) * (len(SPARK) - 1)
        cells = [SPARK[min(len(SPARK) - 1, max(0, level - floor))] for level in levels]
        lines.append(pad + "".join(cells))
    return lines


@dataclass
class History:
    """A minute of per-second rates: the header's events/s, and per guest_memfd the
    counters in HISTORY_COUNTERS."""

    events: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_S))
    inodes: dict[int, dict[Counter, deque[float]]] = field(default_factory=dict)

    def add(self, rates: Rates) -> None:
        self.events.append(rates.events_per_s)
        for ino, rate in rates.inodes.items():
            series = self.inodes.setdefault(
                ino, {name: deque(maxlen=HISTORY_S) for _, name in HISTORY_COUNTERS}
            )
            for _, name in HISTORY_COUNTERS:
                series[name].append(rate.get(name, 0.0))


class Maps(Widget):
    """The guest_memfds' shareability maps, one above the other, with their history; the
    selected one marked. It takes the rows the other panels leave; as many maps as fit, the
    selection kept in sight; room left over makes the maps finer (more lines each, fewer
    pages a cell), then their history charts taller."""

    def __init__(self, app: LiveApp) -> None:
        super().__init__(id="maps")
        self.live = app

    def render(self) -> RenderableType:
        board, states = Dashboard(self.live.frame), self.live.shown()
        if not states:
            waiting = self.live.view.info.waiting_for or self.live.view.info.targets
            if self.live.filter:
                return Text(f"no guest_memfd matches the filter {self.live.filter!r}", "yellow")
            return Text(f"waiting for guest_memfd activity from {waiting} ...", "bold yellow")
        width, height = max(self.size.width - 2, 8), max(self.size.height, 2)
        # label, map, history, ranges: what fits for every one shown (two at least)
        lines_each = next(
            (n for n in (4, 3) if height >= n * min(len(states), 2 if n == 3 else len(states)) + 1),
            2,
        )
        fit = max(1, min(len(states), (height - 1) // lines_each))
        selected = self.live.selected_index(states)
        first = min(max(0, selected - fit + 1), max(0, len(states) - fit))
        shown = states[first : first + fit]
        spare = height - 1 - fit * lines_each
        rows = self.strip_rows(shown, states[selected], width, spare)
        spare -= sum(rows.values()) - len(rows)
        # What the maps cannot use makes the history charts taller (the first ones take
        # what does not divide evenly): no row left blank.
        chart = {
            s.ino: 1 + min(MAX_CHART_ROWS - 1, spare // len(shown) + (i < spare % len(shown)))
            if lines_each >= 3
            else 1
            for i, s in enumerate(shown)
        }
        parts: list[RenderableType] = []
        for i, state in enumerate(shown, start=first):
            label, strip = board.strip_lines(state, width, rows[state.ino], stretch=True)
            marker = Text("▶ " if i == selected else "  ", style="bold")
            assert isinstance(label, Text)
            label = Text.assemble(marker, label, no_wrap=True, overflow="ellipsis")
            if i == selected:
                label.stylize("reverse", 0, len(label))
            parts.extend([label, Padding(strip, (0, 0, 0, 2))])
            if lines_each >= 3:
                parts.extend(self.history_lines(state.ino, width, chart[state.ino]))
            if lines_each == 4:
                parts.append(ranges_line(state))
        footer = Text(no_wrap=True, overflow="ellipsis")
        hidden = len(states) - fit
        if hidden > 0:
            below = hidden - first
            footer.append(f"  {first} above, {below} below (Up/Down)  ", style="bold")
        footer.append_text(self.live.legend())
        parts.append(footer)
        return Group(*parts)

    @staticmethod
    def strip_rows(
        shown: list[InodeState], selected: InodeState, width: int, spare: int
    ) -> dict[int, int]:
        """Lines per map: one each, then the spare lines to those that can use them (the
        selected one first), up to one page a cell."""
        rows = {s.ino: 1 for s in shown}
        for state in sorted(shown, key=lambda s: s.ino != selected.ino):
            wanted = ShareabilityStrip.rows_for(state.size_pages, width, MAX_STRIP_ROWS) - 1
            extra = max(0, min(wanted, spare))
            rows[state.ino] += extra
            spare -= extra
        return rows

    def history_lines(self, ino: int, width: int, rows: int) -> list[Text]:
        """Host, refused and guest faults a second over the last minute, side by side: each
        label and its number, then its chart right beside them (oldest second first)."""
        series = self.live.history.inodes.get(ino, {})
        label = max(len(short) for short, _ in HISTORY_COUNTERS) + 3  # "ref/s"
        number = 7
        span = max(8, min(HISTORY_S, (width - 2) // len(HISTORY_COUNTERS) - label - number - 3))
        charts = {name: list(series.get(name, [])) for _, name in HISTORY_COUNTERS}
        # Only what there is: a chart starts beside its number, however little history.
        drawn = {name: sparkline(v, min(len(v), span) or 1, rows) for name, v in charts.items()}
        lines = []
        for row in range(rows):
            last = row == rows - 1
            text = Text("  ", no_wrap=True, overflow="ellipsis")
            for short, name in HISTORY_COUNTERS:
                values = charts[name]
                style = "red" if short == "ref" and any(values) else "cyan"
                text.append(f"{short + '/s':<{label}}" if last else " " * label, style="dim")
                now = f"{values[-1] if values else 0:>{number - 1}.0f} "
                text.append(now if last else " " * number)
                text.append(f"{drawn[name][row]:<{span}}", style=style)
                text.append("   ")
            lines.append(text)
        return lines


def ranges_line(state: InodeState) -> Text:
    """The guest_memfd's page ranges and their states, as far as the line goes."""
    text = Text("  ", no_wrap=True, overflow="ellipsis")
    for first, end, (share, source) in state.shareability.runs():
        where = f"{first}" if end - first == 1 else f"{first}-{end - 1}"
        text.append(f"{where} ", style="bold")
        text.append(f"{share.value}", style=STATE_COLOUR[share])
        text.append(f" ({source})  ", style="dim")
    return text


class PageMap(Screen[None]):
    """One guest_memfd at page resolution: every page a cell, rows of 64 with their offset,
    then its ranges of pages with their state and where it comes from."""

    BINDINGS: ClassVar = [
        Binding("escape,enter", "app.pop_screen", "back"),
        Binding("q", "app.quit_view", "quit"),  # q quits from every screen
    ]

    def __init__(self, app: LiveApp, ino: int) -> None:
        super().__init__()
        self.live, self.ino = app, ino

    def compose(self) -> ComposeResult:
        yield Static(id="page-title")
        with VerticalScroll(id="page-scroll"):
            yield Static(id="page-map")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_map()
        self.set_interval(1.0, self.refresh_map)

    def refresh_map(self) -> None:
        state = self.live.view.model.inodes.get(self.ino)
        if state is None:
            return
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(f"ino {state.ino}", style="bold")
        title.append(
            f"  {state.size_pages} pages  shared {state.pages(Share.SHARED)}"
            f"  private {state.pages(Share.PRIVATE)}  unknown {state.pages(Share.UNKNOWN)}"
            f"  resident {state.resident.count(True)}  (Escape: back)"
        )
        self.query_one("#page-title", Static).update(Group(title, self.live.legend()))
        self.query_one("#page-map", Static).update(self.page_rows(state))

    def page_rows(self, state: InodeState) -> RenderableType:
        plain = no_colour()
        refused = {r.page for r in self.live.view.model.refused if r.ino == state.ino}
        rows = Text(no_wrap=True)
        for row in range(0, state.size_pages, PAGES_PER_ROW):
            rows.append(f"{row:>9} {row * 4096:#012x}  ", style="dim")
            for page in range(row, min(row + PAGES_PER_ROW, state.size_pages)):
                share, _ = state.shareability.get(page)
                glyph, style = page_glyph(
                    share, bool(state.resident.get(page)), page in refused, plain
                )
                rows.append(glyph, style=style)
            rows.append("\n")
        ranges = Table(title="page ranges", title_justify="left", box=None, padding=(0, 2))
        for name in ("first", "last", "pages", "bytes from", "state", "from"):
            ranges.add_column(name, justify="right" if name != "state" else "left")
        for first, end, (share, source) in state.shareability.runs():
            ranges.add_row(
                str(first),
                str(end - 1),
                str(end - first),
                f"{first * 4096:#x}",
                share.value,
                source,
            )
        return Group(rows, ranges)


class Explain(Screen[None]):
    """Why each fault was refused and each memory fault exit happened, newest first: the
    page, its state, what put it there, who faulted, and an exit's answer (`gmemtrace
    explain` on the capture so far)."""

    BINDINGS: ClassVar = [
        Binding("escape,e", "app.pop_screen", "back"),
        Binding("q", "app.quit_view", "quit"),
    ]

    def __init__(self, app: LiveApp) -> None:
        super().__init__()
        self.live = app
        self.content: RenderableType = Text()

    def compose(self) -> ComposeResult:
        yield Static(id="explain-title")
        with VerticalScroll(id="explain-scroll"):
            yield Static(id="explain")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_explanations()
        self.set_interval(1.0, self.refresh_explanations)

    def refresh_explanations(self) -> None:
        model = self.live.view.model
        items = explain(model, model.first_ns or 0)
        title = Text(f"{len(items)} refused faults and memory fault exits, newest first")
        title.stylize("bold")
        title.append("  (Escape: back)", style="dim")
        self.query_one("#explain-title", Static).update(title)
        self.content = to_text(items[::-1])  # what is on the screen
        self.query_one("#explain", Static).update(self.content)


class Help(ModalScreen[None]):
    BINDINGS: ClassVar = [
        Binding("escape,question_mark", "app.pop_screen", "close"),
        Binding("q", "app.quit_view", "quit"),
    ]

    def compose(self) -> ComposeResult:
        yield Static(HELP.format(sorts=", ".join(c.short for c in SORTS)), id="help")


class LiveApp(App[None]):
    """The live view's screen; LiveView's tick feeds it."""

    ENABLE_COMMAND_PALETTE = False
    TITLE = "gmemtrace"

    CSS = """
    Screen { overflow: hidden; }
    #header { height: 2; }
    #maps { height: 1fr; min-height: 4; overflow: hidden; }
    #tables { height: auto; max-height: 35%; }
    #inode-table { width: auto; height: auto; margin-right: 2; }
    #thread-table { width: 1fr; height: auto; }
    #logs { height: auto; min-height: 2; max-height: 40%; }
    #recent { width: 2fr; }
    #latency { width: 1fr; }
    #output { height: 5; display: none; border-top: solid $secondary; }
    #filter { dock: bottom; display: none; }
    #help { width: 80; height: auto; padding: 1 2; border: solid $accent; background: $panel; }
    Help { align: center middle; }
    """
    BINDINGS: ClassVar = [
        Binding("q", "quit_view", "quit"),
        Binding("ctrl+c", "quit_view", "quit", show=False, priority=True),
        Binding("p", "pause", "pause"),
        Binding("s", "sort", "sort"),
        # Before any focused widget's: the command's output log would take them to scroll.
        Binding("up", "move(-1)", "select", show=False, priority=True),
        Binding("down", "move(1)", "select", show=False, priority=True),
        Binding("enter", "open", "page map"),
        Binding("e", "explain", "explain"),
        Binding("slash", "filter", "filter"),
        Binding("question_mark", "help", "help"),
    ]

    def __init__(self, view: Feed, tick: Callable[[], bool]) -> None:
        """`tick()`: one round of the view loop (pump, sample); True once it should end."""
        super().__init__()
        self.view, self.tick = view, tick
        self.history = History()
        self.paused = False
        self.sort = view.sort
        self.filter = ""
        self.frame = view.frame(self.sort, self.filter)  # what is on the screen
        self.selected_ino: int | None = None
        self.frames = 0  # frames drawn (a paused view draws none)
        self.output_seen = bytearray()  # the command's, printed again once the app is gone

    # --- what is shown: the frame --------------------------------------------------
    def shown(self) -> list[InodeState]:
        """The guest_memfds on the screen, in its order."""
        return list(self.frame.inodes)

    def selected_index(self, states: list[InodeState]) -> int:
        inos = [s.ino for s in states]
        if self.selected_ino not in inos:
            self.selected_ino = inos[0] if inos else None
        return inos.index(self.selected_ino) if self.selected_ino in inos else 0

    def legend(self) -> Text:
        return legend()

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Maps(self)
        with Horizontal(id="tables"):
            yield Static(id="inode-table")
            yield Static(id="thread-table")
        with Horizontal(id="logs"):
            yield Static(id="recent")
            yield Static(id="latency")
        # The command's output, shown, never focused: the view's keys stay the view's (a
        # focused log took Up/Down for scrolling whenever the command printed).
        yield RichLog(id="output", wrap=False, markup=False, highlight=False)
        yield Input(placeholder="pid or comm (Enter: apply, Escape: cancel)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        # Textual suspends on SIGTSTP and restarts its terminal output on SIGCONT. The view
        # offers no suspend, and a terminal that goes away sends SIGHUP then SIGCONT: the
        # restart on a dead terminal left Textual's shutdown waiting forever on a writer
        # that would never drain, with every probe still attached. Default actions, then.
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        signal.signal(signal.SIGCONT, signal.SIG_DFL)
        self.set_interval(self.view.pump_s, self._tick)
        self.redraw()

    def _tick(self) -> None:
        if self.tick():
            self.exit()
            return
        output = self.view.command_output()
        self.output_seen += output
        if output:
            log = self.query_one("#output", RichLog)
            log.display = True
            log.write(Text(output.decode(errors="replace").rstrip("\n")))
        if self.view.redraw_due():
            self.redraw()

    def redraw(self) -> None:
        """Every panel from the model as it is now (nothing while paused)."""
        if self.paused:
            return
        self.frames += 1
        self.frame = self.view.frame(self.sort, self.filter)  # the one read of the model
        board = Dashboard(self.frame)
        states = self.shown()
        self.query_one("#header", Static).update(Group(*self.header()))
        self.query_one(Maps).refresh(layout=True)  # its height follows the guest_memfds
        height = self.size.height
        rows = max(1, min(len(states), height // 4))
        self.query_one("#inode-table", Static).update(board.inode_table(rows))
        threads = self.query_one("#thread-table", Static)
        threads.display = self.size.width >= WIDE  # beside the inodes' table, or not at all
        if threads.display:
            threads.update(board.thread_table(min(rows, 8)) if self.frame.threads else "")
        # The log and histograms as long as their content, up to a quarter of what is left
        # once the fixed rows are drawn; the maps take every other row (their charts grow).
        log_rows = max(2, (height - 12) // 4)
        recent = board.recent(log_rows)
        self.query_one("#recent", Static).update(
            Group(Text("recent conversions and refused faults", style="bold"), *recent)
            if recent
            else Text("no conversion or refused fault yet", style="dim")
        )
        latency_width = max(self.size.width // 3 - 1, 20)  # its column: 1fr of 3
        self.query_one("#latency", Static).update(
            Group(*board.histograms(log_rows + 1, latency_width))
        )

    def header(self) -> list[Text]:
        """The header of the frame on the screen, with the view's own state."""
        first, second = Dashboard(self.frame).header(self.size.width)
        recent = list(self.history.events)[-min(HISTORY_S, max(10, self.size.width // 5)) :]
        (spark,) = sparkline(recent, len(recent) or 1)  # beside its label, not padded away
        first.append("  last minute ", style="dim")
        first.append(spark, style="cyan")
        second.append(f"  sort {self.sort.short}", style="bold")
        if self.filter:
            second.append(f"  filter {self.filter!r}", style="bold yellow")
        if self.paused:
            second.append("  PAUSED (p resumes)", style="bold black on yellow")
        return [first, second]

    def sampled(self, rates: Rates) -> None:
        """A rate interval ended: its rates join the history."""
        self.history.add(rates)

    # --- keys ----------------------------------------------------------------------
    def action_quit_view(self) -> None:
        self.exit()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.redraw()
        else:  # say so at once: the last frame stays, marked
            self.query_one("#header", Static).update(Group(*self.header()))

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self._redraw_now()

    def action_move(self, step: int) -> None:
        states = self.shown()
        if states:
            index = min(max(self.selected_index(states) + step, 0), len(states) - 1)
            self.selected_ino = states[index].ino
        self._redraw_now()

    def action_open(self) -> None:
        states = self.shown()
        if states:
            self.push_screen(PageMap(self, states[self.selected_index(states)].ino))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = self.filter
        box.display = True
        box.focus()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        self.filter = message.value.strip()
        self._close_filter()
        self.selected_ino = None
        self._redraw_now()

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.query_one("#filter", Input).display:
            self._close_filter()
            event.stop()

    def _close_filter(self) -> None:
        self.query_one("#filter", Input).display = False
        self.screen.set_focus(None)  # keys are the view's again

    def on_resize(self, event: events.Resize) -> None:
        """A new size: lay the panels out for it now, not at the next frame."""
        self.call_after_refresh(self._redraw_now)

    def action_help(self) -> None:
        self.push_screen(Help())

    def action_explain(self) -> None:
        self.push_screen(Explain(self))

    def _redraw_now(self) -> None:
        paused, self.paused = self.paused, False
        self.redraw()
        self.paused = paused

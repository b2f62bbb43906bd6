"""The live view's keys, driven against real VMMs: Textual's pilot in-process (select a
guest_memfd, open its page map, filter, pause, sort, help, quit) at 80x24 and 200x60, and
the whole command in tmux, quit with `q`, summary printed."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from gmemtrace.capture import Capture, StopRule, Targets
from gmemtrace.kernel.procfs import comm_of
from gmemtrace.sinks.app import Explain, Help, LiveApp, Maps, PageMap
from gmemtrace.view import LiveView, view_of
from tests.tracing import SAFETY_S, Owned, owned_bpf, still_loaded, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]
GMEMTRACE = [sys.executable, "-m", "gmemtrace"]
# Two VMMs: a slow steady storm on one big guest_memfd, and the mixed workload's three.
STORM = ["fault-storm", "--pages", "4096", "--rounds", "60", "--rate", "2000", "-q"]
MIXED = ["mixed", "--rate", "20", "--hold", "20", "-q"]
VMMS = (
    f"{shlex.join([*GMEMTRACE, 'workload', *STORM])} & "
    f"{shlex.join([*GMEMTRACE, 'workload', *MIXED])}; wait"
)


def text_of(renderable: object, width: int) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


async def until(pilot: object, check: object, timeout_s: float = SAFETY_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.2)  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=["80x24", "200x60"])
def test_keys_drive_the_view(size: tuple[int, int]) -> None:
    capture = Capture(
        Targets(command=["sh", "-c", VMMS]),
        stream_hot=False,
        capture_output=True,
        stop=StopRule(handle_signals=False),
    )

    async def drive(view: LiveView) -> LiveApp:
        view.begin()
        app = view.make_app()
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: len(app.shown()) >= 4)
            maps = app.query_one(Maps)
            assert maps.size.height >= 4 and maps.size.width == size[0]
            storm = max(app.shown(), key=lambda s: s.size_pages)
            # Select the big guest_memfd, open its map at page resolution. The ranking may
            # change between two key presses (rates move): step towards it as it stands.
            steps = []
            for _ in range(100):
                order = [s.ino for s in app.shown()]
                if app.selected_ino == storm.ino:
                    break
                here = order.index(app.selected_ino) if app.selected_ino in order else 0
                key = "down" if order.index(storm.ino) > here else "up"
                steps.append((order, app.selected_ino, key, app.focused))
                await pilot.press(key)
            assert app.selected_ino == storm.ino, (storm.ino, steps[:3], steps[-3:])
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, PageMap))
            assert isinstance(app.screen, PageMap) and app.screen.ino == storm.ino
            page_map = text_of(app.screen.page_rows(storm), 200)
            assert "0x00000000" in page_map and f"{4032 * 4096:#012x}" in page_map
            assert "page ranges" in page_map and "shared" in page_map
            scroll = app.screen.query_one("#page-scroll")
            await pilot.press("pagedown")
            # 64 rows of 64 pages: more than a screen, scrolled.
            await until(pilot, lambda: scroll.scroll_y > 0)
            await pilot.press("escape")
            assert not isinstance(app.screen, PageMap)
            # Filter by the storm's pid: its guest_memfd alone; then by a name: all again.
            await pilot.press("slash")
            for key in str(storm.pid):
                await pilot.press(key)
            await pilot.press("enter")
            assert [s.ino for s in app.shown()] == [storm.ino]
            assert f"filter '{storm.pid}'" in text_of(app.header()[1], 200)
            name = comm_of(storm.pid)[:4]  # the VMMs' name ("pyth": python -m gmemtrace)
            await pilot.press("slash", "ctrl+u", *list(name), "enter")
            assert len(app.shown()) >= 4
            await pilot.press("slash", "ctrl+u", "enter")
            assert app.filter == ""
            # Pause: the display holds while collection goes on.
            await pilot.press("p")
            assert app.paused
            assert "PAUSED" in text_of(app.header()[1], 200)
            frames, events = app.frames, capture.collector.events_seen
            await until(pilot, lambda: capture.collector.events_seen > events + 100)
            assert app.frames == frames, "collection went on, the display held"
            await pilot.press("p")
            assert not app.paused
            await until(pilot, lambda: app.frames > frames)
            # Sort cycles; help opens and closes.
            sort = app.sort
            await pilot.press("s")
            assert app.sort != sort
            await pilot.press("question_mark")
            assert isinstance(app.screen, Help)
            await pilot.press("escape")
            assert not isinstance(app.screen, Help)
            # Why the mixed workload's fault was refused: its page private since creation.
            await until(pilot, lambda: app.view.model.refused)
            await pilot.press("e")
            await until(pilot, lambda: isinstance(app.screen, Explain))
            assert isinstance(app.screen, Explain)
            shown = text_of(app.screen.content, 200)
            assert re.search(r"#1 refused (read|write) at", shown), shown
            assert "since" in shown and "created (MMAP)" in shown, shown
            await pilot.press("escape")
            assert not isinstance(app.screen, Explain)
            await pilot.press("q")
            await pilot.pause(0.2)
        return app

    with capture:  # attached, and the VMMs started
        view = view_of(capture, interval_s=0.5)
        app = asyncio.run(drive(view))
        assert app.return_code in (0, None)
        view.drain()
    assert len(capture.collector.model.inodes) >= 4


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _start_in_tmux(session: str, size: tuple[int, int], command: str, done: Path) -> None:
    """`command` in a detached tmux session of `size`; its exit status goes to `done`."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (make setup installs it)")
    # Under pytest, readline has put LINES=24 and COLUMNS=80 into the process environment
    # (below os.environ): a tmux server started from here passes them on, and the app
    # would believe them rather than the pane's size.
    shell = (
        f"unset LINES COLUMNS; cd {shlex.quote(os.getcwd())} && {command}; "
        f"echo exit=$? > {done}; sleep 30"
    )
    _tmux("new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), shell)


def _wait_for(done: Path, deadline: float) -> None:
    while not done.exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=["80x24", "200x60"])
def test_q_quits_with_the_summary_in_a_real_terminal(tmp_path: Path, size: tuple[int, int]) -> None:
    session = f"gmemtrace-keys-{os.getpid()}-{size[0]}"
    done = tmp_path / "done"
    _start_in_tmux(session, size, shlex.join([*GMEMTRACE, "--", "sh", "-c", VMMS]), done)
    try:
        deadline = time.monotonic() + SAFETY_S
        # The app's first frames may be drawn in parts, or before it has the terminal's
        # size: wait for a whole one, the keys on the last row.
        while not (
            "ino " in (screen := _tmux("capture-pane", "-p", "-t", session))
            and "q quit" in screen.splitlines()[-1]
        ):
            assert time.monotonic() < deadline, screen
            time.sleep(0.3)
        assert "filter" in screen, "the keys are on screen"
        assert len(screen.splitlines()) == size[1], "the whole screen"
        _tmux("send-keys", "-t", session, "q")
        _wait_for(done, deadline)
        final = _tmux("capture-pane", "-p", "-S", "-200", "-t", session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    assert done.read_text().strip() == "exit=0"
    assert "gmemtrace report:" in final and "lost events: 0" in final
    assert "ended sh" in final, "the command was ended, and gmemtrace said so"


@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
def test_a_one_inode_storm_fills_a_real_terminal(tmp_path: Path, size: tuple[int, int]) -> None:
    """In tmux, during a storm on one guest_memfd: at least 90% of the rows carry content
    once the storm is on screen, and at 80 columns the tables' headers and the histogram
    buckets are whole lines (nothing wrapped onto the next row)."""
    session = f"gmemtrace-fill-{os.getpid()}-{size[0]}"
    done = tmp_path / "done"
    storm = [*GMEMTRACE, "workload", *STORM]
    _start_in_tmux(session, size, shlex.join([*GMEMTRACE, "--", *storm]), done)
    try:
        deadline = time.monotonic() + SAFETY_S
        # A whole frame at the terminal's size (the keys on its last row: Textual's first
        # frames may come before it has the size) with the storm's rate in its history.
        while not (
            "q quit" in (screen := _tmux("capture-pane", "-p", "-t", session)).splitlines()[-1]
            and re.search(r"host/s +[1-9]\d* ", screen)
        ):
            assert time.monotonic() < deadline, screen
            time.sleep(0.3)
        _tmux("send-keys", "-t", session, "q")
        _wait_for(done, deadline)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    lines = screen.splitlines()
    used = sum(1 for line in lines if line.strip())
    assert used >= 0.9 * size[1], screen
    header = next(line for line in lines if line.lstrip().startswith("inode "))
    assert "refused" in header.split(), header
    assert done.read_text().strip() == "exit=0"


def test_a_terminal_that_goes_away_ends_the_view_and_frees_its_probes(tmp_path: Path) -> None:
    """Closing the terminal (tmux kill-session: SIGHUP, then SIGCONT) ends gmemtrace and
    frees every program it held; Textual's restart on SIGCONT used to hang it forever."""
    session = f"gmemtrace-hup-{os.getpid()}"
    pid_file = tmp_path / "pid"
    storm = shlex.join([*GMEMTRACE, "workload", *STORM])
    command = f"echo $$ > {pid_file}; exec {shlex.join(GMEMTRACE)} -- {storm}"  # $$: the viewer
    _start_in_tmux(session, (120, 40), command, tmp_path / "done")
    try:
        deadline = time.monotonic() + SAFETY_S
        while "q quit" not in (screen := _tmux("capture-pane", "-p", "-t", session)):
            assert time.monotonic() < deadline, screen
            time.sleep(0.3)
        viewer = int(pid_file.read_text())
        owned = owned_bpf(viewer)
        assert owned.programs, "attached"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    wait_until(lambda: not Path(f"/proc/{viewer}").exists(), "gmemtrace ended with its terminal")
    assert still_loaded(owned) == Owned()


def test_stderr_redirected_gets_the_plain_tables(tmp_path: Path) -> None:
    """Textual draws through stderr: with stderr in a file, the terminal gets the plain
    tables (not an app drawn into the file)."""
    session = f"gmemtrace-plain-{os.getpid()}"
    done, err = tmp_path / "done", tmp_path / "err"
    command = shlex.join([*GMEMTRACE, "-i", "0.5", "--", *GMEMTRACE, "workload", *MIXED[:-3]])
    _start_in_tmux(session, (120, 40), f"{command} 2>{err}", done)
    try:
        _wait_for(done, time.monotonic() + SAFETY_S)
        screen = _tmux("capture-pane", "-p", "-S", "-400", "-t", session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    assert done.read_text().strip() == "exit=0"
    assert "RESIDENT" in screen and "gmemtrace report:" in screen, "plain tables, then the summary"
    assert "\x1b[?1049h" not in err.read_text(), "no full-screen app in the file"
    assert "Ctrl-C to end." in err.read_text()

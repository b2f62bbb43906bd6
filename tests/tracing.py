"""Starting gmemtrace from a test the race-free way: wait for facts, never for time.

- `Started` runs a gmemtrace command and returns once it has printed its ready line
  ("... Ctrl-C to end.": every probe attached), so a workload released after it is
  seen from its first event, however busy the machine is.
- `owned_bpf(pid)` names the BPF programs and maps a process holds (its descriptors'
  fdinfo), so "nothing left attached" is checked on what this test's tracer loaded,
  not on the whole machine (another tracer, a second gmemtrace, may be running).
- `still_loaded(owned)` waits for the kernel to free them (it does so a moment after the
  last descriptor closes) and returns what is left: the empty set when all is gone.

Every wait has a safety limit (SAFETY_S) that only ends a test that would otherwise hang;
none stands in for readiness.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

GMEMTRACE = [sys.executable, "-m", "gmemtrace"]
READY = "Ctrl-C to end."
SAFETY_S = 600.0  # a hung test ends here; nothing waits this long on a healthy run


@dataclass(frozen=True)
class Owned:
    """BPF objects held by one process: program and map ids."""

    programs: frozenset[int] = field(default_factory=frozenset)
    maps: frozenset[int] = field(default_factory=frozenset)


def owned_bpf(pid: int | str = "self") -> Owned:
    """The BPF programs and maps `pid` holds a descriptor to (program, link or map fds)."""
    programs, maps = set(), set()
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    for entry in fdinfo.iterdir():
        try:
            text = entry.read_text()
        except OSError:  # closed meanwhile
            continue
        programs.update(int(m) for m in re.findall(r"^prog_id:\s*(\d+)", text, re.M))
        maps.update(int(m) for m in re.findall(r"^map_id:\s*(\d+)", text, re.M))
    return Owned(frozenset(programs), frozenset(maps))


def loaded_ids(kind: str) -> set[int]:
    """Ids of every loaded BPF `kind` ("prog" or "map") on the machine."""
    import json

    out = subprocess.run(
        ["bpftool", kind, "show", "--json"], capture_output=True, text=True, check=True
    ).stdout
    return {int(p["id"]) for p in json.loads(out)}


def loaded_since(before: Owned, timeout_s: float = SAFETY_S) -> Owned:
    """What was loaded since `before` (everything_loaded()) and is still there once it is all
    gone or `timeout_s` passed: for a machine of the test's own (the lab's guest), where a
    command run under `record` leaves no process to ask."""
    now = everything_loaded()
    return still_loaded(Owned(now.programs - before.programs, now.maps - before.maps), timeout_s)


def everything_loaded() -> Owned:
    return Owned(frozenset(loaded_ids("prog")), frozenset(loaded_ids("map")))


def still_loaded(owned: Owned, timeout_s: float = SAFETY_S) -> Owned:
    """What of `owned` the kernel still has, once it is all gone or `timeout_s` passed
    (a program whose raw-tracepoint link closed is freed a moment later, after RCU)."""
    deadline = time.monotonic() + timeout_s
    while True:
        programs, maps = owned.programs & loaded_ids("prog"), owned.maps & loaded_ids("map")
        left = Owned(frozenset(programs), frozenset(maps))
        if not (left.programs or left.maps) or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


class Started:
    """A gmemtrace process past its ready line; its output collected in the background.

    `Started(args)` runs `python -m gmemtrace ARGS`; `owned` is what BPF it held once
    attached; `finish()` waits for it to end and gives (status, stdout, stderr)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [*GMEMTRACE, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.pid = self.process.pid
        self._out: list[str] = []
        self._err: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._threads = [
            threading.Thread(target=self._drain, args=(self.process.stdout, self._out), daemon=True)
        ]
        self._threads[0].start()
        # The ready line comes first on stderr (anything before it is an error).
        for line in self.process.stderr:
            self._err.append(line)
            if line.rstrip().endswith(READY):
                break
        else:
            self.process.wait()
            self._threads[0].join()
            raise AssertionError(
                f"gmemtrace {' '.join(args)} ended before attaching "
                f"(status {self.process.returncode}): {''.join(self._err)[-3000:]}"
            )
        self.owned = owned_bpf(self.pid)
        errors = threading.Thread(
            target=self._drain, args=(self.process.stderr, self._err), daemon=True
        )
        errors.start()
        self._threads.append(errors)

    @staticmethod
    def _drain(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    @property
    def stdout_so_far(self) -> str:
        return "".join(self._out)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout_s: float = SAFETY_S) -> tuple[int, str, str]:
        try:
            status = self.process.wait(timeout=timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        for thread in self._threads:
            thread.join()
        return status, "".join(self._out), "".join(self._err)

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_until(check: Callable[[], T], what: str, timeout_s: float = SAFETY_S) -> T:
    """Poll `check()` until it is true (a fact: a file written, a mapping made); fails the
    test only past the safety limit."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)
    return result


def session_of(pid: int) -> int | None:
    """The session id of `pid` (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[3])


def processes_in_session(sid: int) -> list[int]:
    """Every live process of session `sid` (a tracer started with start_new_session=True
    and whatever it started: its loader child, its command)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and session_of(int(entry.name)) == sid:
            found.append(int(entry.name))
    return found


def leftovers_of_session(sid: int, timeout_s: float = SAFETY_S) -> list[int]:
    """Processes of session `sid` still alive once all have ended or `timeout_s` passed: a
    tracer's loader child or command left behind would hold what it loaded."""
    deadline = time.monotonic() + timeout_s
    while (left := processes_in_session(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def events_of(trace: Path, kind: str) -> list[dict[str, Any]]:
    """The recorded events of one kind, as rows of the pandas API."""
    import gmemtrace as api

    frame = api.read_trace(trace).events
    rows: list[dict[str, Any]] = frame[frame["kind"] == kind].to_dict("records")
    return rows


class Bpftrace:
    """bpftrace counting beside gmemtrace, as a cross-check: started by `with`, returned once
    its BEGIN has printed "attached" (every probe of the script attached: the fact to wait
    for); at the end of the block it is interrupted and its map dump read (`counts`)."""

    def __init__(self, script: str) -> None:
        assert 'printf("attached\\n")' in script, "the script says when it is attached"
        self.script = script
        self.output = ""
        self.counts: dict[str, int] = {}

    def __enter__(self) -> Bpftrace:
        self.process = subprocess.Popen(
            ["bpftrace", "-e", self.script],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip() == "attached":
                return self
        self.process.wait()
        raise AssertionError(f"bpftrace ended before attaching: {self.script}")

    def __exit__(self, *_: object) -> None:
        self.process.send_signal(signal.SIGINT)
        self.output, _ = self.process.communicate(timeout=SAFETY_S)
        for line in self.output.splitlines():  # "@name[key]: value" at exit
            name, sep, value = line.partition(": ")
            if sep and name.startswith("@") and value.strip().isdigit():
                self.counts[name.strip()] = int(value)

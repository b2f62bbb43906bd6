"""One frame of the live view: the model read, filtered and ranked once per redraw.

As kvm_stat reads and sorts once per refresh and memray's live view posts one snapshot,
the view loop (gmemtrace/view.py) builds one Frame per redraw and the app only reads it:
the filter and the ranking live here, not in the widgets. Frames are values: what is
shown, with the time it was taken.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gmemtrace.events import Counter, Counts, Probe
from gmemtrace.model.rates import Rates
from gmemtrace.model.state import InodeState, Model


class Mode(enum.StrEnum):
    """How the live view shows itself."""

    LIVE = "live"  # the Textual app on the terminal
    PLAIN = "plain"  # one bcc-style table per interval
    JSON = "json"  # one JSON object per interval


# What --sort and the view's s key choose from: the counters shown per second.
SORTS = tuple(c for c in Counter if c.rated)


@dataclass(frozen=True)
class ViewInfo:
    """What the view shows besides the model, fixed for a capture."""

    kernel: str
    probes: dict[str, Probe]
    targets: str
    waiting_for: str = ""  # targets named but no guest_memfd activity seen yet
    note: str = ""  # e.g. "replaying a recorded trace"


@dataclass(frozen=True)
class Frame:
    """What one redraw shows. `inodes` and `threads`: those the filter selects, busiest
    first by the sort's counter (its rate over the last interval, then its total)."""

    model: Model
    rates: Rates
    info: ViewInfo
    elapsed_s: float
    now_ns: int  # the model's clock (CLOCK_MONOTONIC) at this frame
    sort: Counter
    filter: str
    inodes: tuple[InodeState, ...]
    threads: tuple[tuple[tuple[int, int], Counts], ...]


def make_frame(
    model: Model,
    rates: Rates,
    info: ViewInfo,
    elapsed_s: float,
    now_ns: int,
    sort: Counter = Counter.HOST_FAULTS,
    wanted: str = "",
) -> Frame:
    """The frame of `model` now: filtered by `wanted` (a pid, or part of a process name),
    ranked by `sort`."""

    def inode_activity(state: InodeState) -> tuple[float, int, int]:
        return (rates.inodes.get(state.ino, {}).get(sort, 0.0), state.counts[sort], state.ino)

    inodes = sorted(
        (s for s in model.inodes.values() if matches(model, s.pid, wanted)),
        key=inode_activity,
        reverse=True,
    )
    threads = sorted(
        ((k, v) for k, v in model.per_thread.items() if matches(model, k[0], wanted)),
        key=lambda kv: (rates.threads.get(kv[0], {}).get(sort, 0.0), kv[1][sort]),
        reverse=True,
    )
    return Frame(model, rates, info, elapsed_s, now_ns, sort, wanted, tuple(inodes), tuple(threads))


def matches(model: Model, pid: int | None, wanted: str) -> bool:
    """Whether the filter (a pid, or part of a process name as the events named it)
    selects process `pid`."""
    if not wanted:
        return True
    if pid is None:
        return False
    if wanted.isdigit():
        return int(wanted) == pid
    return wanted in model.comms.get(pid, "")

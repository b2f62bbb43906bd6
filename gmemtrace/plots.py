"""Plots of a trace (recorded, or a session's snapshot) as matplotlib figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gmemtrace.analysis import Trace
from gmemtrace.errors import GmemtraceError
from gmemtrace.events import CONV_TO_PRIVATE, DISCOVERED, Kind
from gmemtrace.kernel.uapi import GUEST_MEMFD_FLAG_INIT_SHARED
from gmemtrace.model.state import Share
from gmemtrace.sinks.palette import ABSENT_HEX, STATE_HEX

if TYPE_CHECKING:
    from matplotlib.figure import Figure

UNKNOWN, SHARED, PRIVATE, ABSENT = range(4)  # the map's cell values
STATE_COLOURS = [
    STATE_HEX[Share.UNKNOWN],
    STATE_HEX[Share.SHARED],
    STATE_HEX[Share.PRIVATE],
    ABSENT_HEX,
]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise GmemtraceError("plots need matplotlib: pip install 'gmemtrace[notebook]'") from None
    return plt


def _faults(trace: Trace) -> pd.DataFrame:
    """Successful host faults (a refused one appears as a fault and a refusal) and guest faults."""
    ev = trace.events
    kinds = ev["kind"].astype(str)
    host = ev[kinds == "host_fault"].assign(weight=1)
    refused = ev[kinds == "host_fault_refused"].assign(weight=-1)
    guest = ev[kinds == "guest_fault"].assign(weight=ev["count"])
    return pd.concat(
        [host.assign(series="host"), refused.assign(series="host"), guest.assign(series="guest")]
    )


def fault_rate(trace: Trace, by: str = "inode", freq: str = "100ms") -> Figure:
    """Host and guest faults per second over time, one line per inode (or per pid)."""
    if by not in ("inode", "pid"):
        raise ValueError("by must be 'inode' or 'pid'")
    plt = _pyplot()
    key = "ino" if by == "inode" else "pid"
    faults = _faults(trace)
    fig, ax = plt.subplots(figsize=(9, 4))
    seconds = pd.to_timedelta(freq).total_seconds()
    for (series, who), group in sorted(faults.groupby(["series", key]), key=lambda g: g[0]):
        buckets = (group["time_s"] // seconds).astype(int)
        per_bucket = group.groupby(buckets)["weight"].sum()
        if per_bucket.sum() == 0:
            continue
        full = per_bucket.reindex(range(int(buckets.max()) + 1), fill_value=0)
        ax.step(
            full.index * seconds,
            full.to_numpy() / seconds,
            where="post",
            label=f"{series} {by} {who}",
        )
    ax.set_xlabel("time since the trace started (s)")
    ax.set_ylabel("faults per second")
    ax.set_title(f"fault rate per {by} ({freq} buckets)")
    if ax.lines:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return _figure(fig)


def shareability_over_time(
    trace: Trace, ino: int, time_bins: int = 200, page_bins: int = 256
) -> Figure:
    """Page index x time coloured by shareability; faults, refusals and conversion requests
    drawn on top (solid: converted, dashed: refused by the kernel)."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap

    ev = trace.data.events
    mine = ev[ev["ino"] == ino]
    state = trace.model.inodes[ino]
    size = max(state.size_pages, 1)
    start = trace.data.header.start_ns
    end = max(int(ev["ts_ns"].max()) if ev.size else start, start + 1)
    t_edges = np.linspace(start, end, time_bins + 1)
    per_bin = max(1, -(-size // page_bins))
    rows = -(-size // per_bin)
    grid = np.full((rows, time_bins), ABSENT)
    current = np.full(rows, ABSENT)
    changes = mine[np.isin(mine["kind"], (Kind.CREATE, Kind.CONVERT, Kind.HOST_FAULT_REFUSED))]
    column = 0
    for e in changes:
        t_col = int(np.searchsorted(t_edges, e["ts_ns"], side="right")) - 1
        grid[:, column:t_col] = current[:, None]
        column = max(column, t_col)
        kind = int(e["kind"])
        if kind == Kind.CREATE:
            known = not e["flags"] & DISCOVERED
            current[:] = (
                (SHARED if e["arg"] & GUEST_MEMFD_FLAG_INIT_SHARED else PRIVATE)
                if known
                else UNKNOWN
            )
        elif kind == Kind.CONVERT and e["result"] == 0:
            lo, hi = int(e["first"]) // per_bin, -(-int(e["first"] + e["count"]) // per_bin)
            current[lo:hi] = PRIVATE if e["flags"] & CONV_TO_PRIVATE else SHARED
        elif kind == Kind.HOST_FAULT_REFUSED and current[int(e["first"]) // per_bin] == UNKNOWN:
            current[int(e["first"]) // per_bin] = PRIVATE
    grid[:, column:] = current[:, None]
    if (current == ABSENT).all() and state.init.value != "unknown":
        grid[:] = {"shared": SHARED, "private": PRIVATE}[state.init.value]  # created before
    fig, ax = plt.subplots(figsize=(9, 4.5))
    extent = (0.0, (end - start) / 1e9, 0.0, float(size))
    ax.imshow(
        grid,
        aspect="auto",
        origin="lower",
        extent=extent,
        interpolation="nearest",
        cmap=ListedColormap(STATE_COLOURS),
        vmin=0,
        vmax=3,
    )
    seconds = (mine["ts_ns"].astype(np.int64) - start) / 1e9
    for kind, marker, colour, label in (
        (Kind.HOST_FAULT, ".", "black", "host fault"),
        (Kind.GUEST_FAULT, ".", "tab:blue", "guest fault"),
        (Kind.HOST_FAULT_REFUSED, "x", "red", "refused fault"),
    ):
        chosen = mine["kind"] == kind
        if chosen.any():
            ax.scatter(
                seconds[chosen],
                mine["first"][chosen],
                s=4 if marker == "." else 40,
                marker=marker,
                color=colour,
                label=label,
            )
    for e, t in zip(
        mine[mine["kind"] == Kind.CONVERT], seconds[mine["kind"] == Kind.CONVERT], strict=True
    ):
        ax.vlines(
            t,
            e["first"],
            e["first"] + e["count"],
            colors="orange",
            linestyles="solid" if e["result"] == 0 else "dashed",
            linewidth=2,
        )
    ax.set_xlabel("time since the trace started (s)")
    ax.set_ylabel("page index")
    ax.set_title(f"inode {ino}: shareability over time")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Patch(color=STATE_COLOURS[SHARED], label="shared"),
        Patch(color=STATE_COLOURS[PRIVATE], label="private"),
        Patch(color=STATE_COLOURS[UNKNOWN], label="unknown"),
        Line2D([], [], color="orange", label="conversion (dashed: refused)"),
    ]
    ax.legend(handles=handles, loc="upper right", fontsize="small")
    fig.tight_layout()
    return _figure(fig)


def resident_pages(trace: Trace) -> Figure:
    """Pages in each guest_memfd's page cache over time."""
    plt = _pyplot()
    ev = trace.events
    kinds = ev["kind"].astype(str)
    pages = ev[kinds.isin(["alloc", "free"])]
    fig, ax = plt.subplots(figsize=(9, 4))
    for ino, group in pages.groupby("ino"):
        delta = np.where(group["kind"].astype(str) == "alloc", group["count"], -group["count"])
        ax.step(group["time_s"], np.cumsum(delta), where="post", label=f"inode {ino}")
    ax.set_xlabel("time since the trace started (s)")
    ax.set_ylabel("resident pages")
    ax.set_title("resident pages per guest_memfd")
    if ax.lines:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return _figure(fig)


def latency(trace: Trace) -> Figure:
    """Latency distributions (log2 buckets) of the operations this tier can time."""
    plt = _pyplot()
    hists = {k: v for k, v in trace.model.latency.items() if v}
    fig, axes = plt.subplots(
        1, max(len(hists), 1), figsize=(4 * max(len(hists), 1), 3.5), squeeze=False
    )
    for ax, (event, hist) in zip(axes[0], sorted(hists.items()), strict=False):
        slots = sorted(hist)
        ax.bar([f"{_ns(1 << s)}" for s in slots], [hist[s] for s in slots], color="tab:purple")
        ax.set_title(f"{event} latency")
        ax.set_xlabel("at least")
        ax.set_ylabel("count")
        ax.tick_params(axis="x", rotation=45)
    if not hists:
        axes[0][0].set_title("no timed operations in this trace")
    fig.tight_layout()
    return _figure(fig)


def _figure(fig: Any) -> Figure:
    figure: Figure = fig
    return figure


def _ns(ns: int) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.0f}{unit}"
    return f"{ns}ns"

"""The pandas view of a trace: `gmemtrace.read_trace(path)` for notebooks and scripts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from gmemtrace.events import Kind, result_name
from gmemtrace.model.state import Model
from gmemtrace.report import build_report, model_of
from gmemtrace.tracefile import TraceData, read_trace_file


@dataclass
class Trace:
    """A trace (recorded, or a live session's events so far) in the model, as DataFrames."""

    path: Path | None
    data: TraceData
    model: Model
    now_ns: int | None = None  # a live session's snapshot: the window ends now

    @property
    def duration_s(self) -> float:
        """The recording's window, start to stop (quiet time included), in seconds."""
        return float(self.report["trace"]["duration_s"])

    @property
    def complete(self) -> bool:
        return self.data.complete

    @property
    def problem(self) -> str:
        return self.data.problem

    @cached_property
    def events(self) -> pd.DataFrame:
        """One row per event: time (s since the start), kind, pid, tid, comm, inode, pages."""
        ev = self.data.events
        frame = pd.DataFrame({name: ev[name] for name in ev.dtype.names or ()})
        # Hot events carry no comm: the process's name comes from its other events.
        frame["comm"] = [
            c.decode(errors="replace") or self.model.comms.get(p, "")
            for c, p in zip(ev["comm"].tolist(), ev["pid"].tolist(), strict=True)
        ]
        frame["kind"] = pd.Categorical([Kind(k).label for k in ev["kind"].tolist()])
        frame.insert(0, "time_s", (frame["ts_ns"] - self.data.header.start_ns) / 1e9)
        return frame

    @cached_property
    def report(self) -> dict[str, Any]:
        h = self.data.header
        return build_report(
            self.model, h.kernel, h.probes, h.start_ns, self.complete, self.problem, self.now_ns
        )

    @cached_property
    def inodes(self) -> pd.DataFrame:
        """One row per guest_memfd inode: size, flags, shareability page counts, totals."""
        rows = [{k: v for k, v in i.items() if k != "shareability"} for i in self.report["inodes"]]
        return pd.DataFrame(rows).set_index("ino") if rows else pd.DataFrame()

    @cached_property
    def explain(self) -> pd.DataFrame:
        """One row per refused host fault, fault past the end and memory fault exit, in time
        order, joined to its cause: the columns of `gmemtrace explain --format json`
        flattened (who.pid, page.state, cause.what, cause.interface, answer.waited_ns...)."""
        rows = self.report["explanations"]
        return pd.json_normalize(rows).set_index("n") if rows else pd.DataFrame()

    @cached_property
    def conversions(self) -> pd.DataFrame:
        """One row per conversion request: when (s since the start), who, which inode and
        pages, the direction, the interface, the result (0 or -errno, and its name), the
        latency, the page that blocked a refused one, and whether it changed nothing."""
        rows = self.report["conversions"]
        frame = pd.DataFrame(rows)
        if frame.empty:
            return frame
        frame.insert(0, "t_s", (frame["ts_ns"] - self.data.header.start_ns) / 1e9)
        frame["result_name"] = [result_name(r) for r in frame["result"]]
        frame["blocking_page"] = frame["blocking_page"].astype("Int64")  # None: not told
        return frame

    def shareability(self, ino: int) -> pd.DataFrame:
        """The inode's shareability at the end of the trace: first, end, pages, state, source."""
        state = self.model.inodes[ino].shareability
        return pd.DataFrame(
            [
                {
                    "first": first,
                    "end": end,
                    "pages": end - first,
                    "state": s.value,
                    "provenance": why.value,
                }
                for first, end, (s, why) in state.runs()
            ]
        )

    def fault_rate(self, freq: str = "1s") -> pd.DataFrame:
        """Host, refused and guest faults per inode and time bucket (counts per bucket)."""
        ev = self.events
        faults = ev[ev["kind"].isin(["host_fault", "host_fault_refused", "guest_fault"])]
        if faults.empty:
            return pd.DataFrame(columns=["host_fault", "host_fault_refused", "guest_fault"])
        when = pd.to_timedelta(faults["time_s"], unit="s")
        counted = faults.assign(
            time=when, n=faults["count"].where(faults["kind"] == "guest_fault", 1)
        )
        table = counted.pivot_table(
            index=[pd.Grouper(key="time", freq=freq), "ino"],
            columns="kind",
            values="n",
            aggfunc="sum",
            fill_value=0,
            observed=True,
        )
        for kind in ("host_fault", "host_fault_refused", "guest_fault"):
            if kind not in table:
                table[kind] = 0
        # A refused fault was taken (a host_fault event) and then refused: count it once.
        table["host_fault"] -= table["host_fault_refused"]
        return table[["host_fault", "host_fault_refused", "guest_fault"]]

    def _repr_html_(self) -> str:
        from gmemtrace.sinks.html import trace_html

        return trace_html(self.report, self.inodes, self.model)


def read_trace(path: str | Path) -> Trace:
    """Open a trace file; a damaged or cut-short one yields its readable prefix."""
    data = read_trace_file(Path(path))
    return Trace(Path(path), data, model_of(data))

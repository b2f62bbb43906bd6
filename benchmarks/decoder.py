"""Decoder throughput: raw ring-buffer records -> events -> model, no kernel involved.

The byte stream is the shipped fault-storm recording, tiled to the size asked
for and framed exactly as the kernel's ring buffer frames records.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from rich.table import Table

from gmemtrace import SHIPPED_TRACES
from gmemtrace.events import EVENT_DTYPE, Kind
from gmemtrace.model.state import Model
from gmemtrace.probes.ringbuf import decode, framed_dtype
from gmemtrace.tracefile import read_trace_file

DRAIN = 65536  # records per drain: what a 50 ms poll sees at ~1.3M events/s


def byte_stream(events: int) -> bytes:
    recorded = read_trace_file(SHIPPED_TRACES["fault-storm"]).events
    recorded = recorded[(recorded["kind"] != Kind.LOST) & (recorded["kind"] != Kind.END)]
    reps = -(-events // recorded.size)
    tiled = np.tile(recorded, reps)[:events]
    span = int(recorded["ts_ns"][-1] - recorded["ts_ns"][0]) + 1
    tiled["ts_ns"] += (np.arange(events) // recorded.size).astype(np.uint64) * np.uint64(span)
    framed = np.zeros(events, dtype=framed_dtype(EVENT_DTYPE))
    framed["len"] = EVENT_DTYPE.itemsize
    framed["event"] = tiled
    return framed.tobytes()


def _run(stream: bytes, events: int, with_model: bool) -> float:
    framed = framed_dtype(EVENT_DTYPE)
    model = Model()
    started = time.perf_counter()
    for at in range(0, events, DRAIN):
        batch, _ = decode(stream, at * framed.itemsize, min(DRAIN, events - at), framed)
        if with_model:
            model.apply(batch)
    return events / (time.perf_counter() - started)


def measure(events: int) -> dict[str, Any]:
    stream = byte_stream(events)
    return {
        "events": events,
        "decode_events_per_s": _run(stream, events, with_model=False),
        "decode_and_model_events_per_s": _run(stream, events, with_model=True),
    }


def table(result: dict[str, Any]) -> Table:
    out = Table(
        title=f"decoder: {result['events']:,} recorded fault-storm events, {DRAIN:,} per drain",
        title_justify="left",
    )
    out.add_column("stage")
    out.add_column("events/s", justify="right")
    out.add_column("target", justify="right")
    out.add_row("ring buffer -> event arrays", f"{result['decode_events_per_s']:,.0f}", "")
    out.add_row(
        "ring buffer -> events -> model",
        f"{result['decode_and_model_events_per_s']:,.0f}",
        ">= 2,000,000",
    )
    return out

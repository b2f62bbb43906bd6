"""The model at scale: memory and update time for huge sparse guest_memfds and many inodes.

Memory is what tracemalloc sees the model allocate. The claim to check: it
grows with the number of intervals (runs of pages), not with the pages.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import numpy as np
from rich.table import Table

from gmemtrace.events import EVENT_DTYPE, Kind
from gmemtrace.kernel.uapi import GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP
from gmemtrace.model.state import Model

TIB_PAGES = (1 << 40) >> 12
GIB_PAGES = (1 << 30) >> 12


def _events(rows: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    """(kind, ino, first, count, arg) -> event records in time order."""
    ev = np.zeros(len(rows), dtype=EVENT_DTYPE)
    kinds, inos, firsts, counts, args = zip(*rows, strict=True)
    ev["kind"], ev["ino"], ev["first"], ev["count"], ev["arg"] = kinds, inos, firsts, counts, args
    ev["ts_ns"] = np.arange(len(rows)) + 1
    ev["pid"] = ev["tid"] = 4242
    return ev


def sparse_inode(pages: int, touched: int) -> np.ndarray:
    """One inode of `pages` pages, `touched` scattered pages faulted and allocated."""
    flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED
    rows = [(Kind.CREATE, 1, 0, pages, flags)]
    stride = pages // touched
    for i in range(touched):
        rows += [(Kind.HOST_FAULT, 1, i * stride, 1, 0), (Kind.ALLOC, 1, i * stride, 1, 0)]
    return _events(rows)


def many_inodes(inodes: int, faults_each: int) -> np.ndarray:
    flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED
    rows = [(Kind.CREATE, ino, 0, GIB_PAGES, flags) for ino in range(1, inodes + 1)]
    for ino in range(1, inodes + 1):
        for i in range(faults_each):
            rows += [(Kind.HOST_FAULT, ino, i * 64, 1, 0), (Kind.ALLOC, ino, i * 64, 1, 0)]
    return _events(rows)


def _apply(events: np.ndarray) -> tuple[float, float, int]:
    """(MB the model holds, seconds to apply, intervals) for a fresh model."""
    tracemalloc.start()
    started = time.perf_counter()
    model = Model()
    for at in range(0, events.size, 65536):
        model.apply(events[at : at + 65536])
    seconds = time.perf_counter() - started
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    intervals = sum(
        len(s.shareability) + len(s.resident) + len(s.last_fault_ns) for s in model.inodes.values()
    )
    return held / 2**20, seconds, intervals


def measure(quick: bool = False) -> list[dict[str, Any]]:
    """`quick`: the same cases, a hundred times smaller (for the end-to-end test)."""
    n = 100 if quick else 1
    cases = [
        (f"1 GiB, {10_000 // n:,} pages touched", sparse_inode(GIB_PAGES, 10_000 // n)),
        (f"1 TiB, {10_000 // n:,} pages touched", sparse_inode(TIB_PAGES, 10_000 // n)),
        (f"1 TiB, {50_000 // n:,} pages touched", sparse_inode(TIB_PAGES, 50_000 // n)),
        (f"1 TiB, {100_000 // n:,} pages touched", sparse_inode(TIB_PAGES, 100_000 // n)),
        (f"{10_000 // n:,} inodes of 1 GiB, 8 pages each", many_inodes(10_000 // n, 8)),
    ]
    out = []
    for name, events in cases:
        memory, seconds, intervals = _apply(events)
        out.append(
            {
                "case": name,
                "events": int(events.size),
                "intervals": intervals,
                "memory_mb": round(memory, 2),
                "seconds": round(seconds, 3),
            }
        )
    return out


def table(rows: list[dict[str, Any]]) -> Table:
    out = Table(
        title="the model at scale (target: under 50 MB, linear in intervals)", title_justify="left"
    )
    for column in ("case", "events", "intervals", "model MB", "bytes/interval", "apply s"):
        out.add_column(column, justify="left" if column == "case" else "right")
    for r in rows:
        out.add_row(
            r["case"],
            f"{r['events']:,}",
            f"{r['intervals']:,}",
            f"{r['memory_mb']:.1f}",
            f"{r['memory_mb'] * 2**20 / max(r['intervals'], 1):.0f}",
            f"{r['seconds']:.2f}",
        )
    return out

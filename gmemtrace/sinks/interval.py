"""Headless output, one record per interval: plain text tables (like the bcc tools) or JSON lines.

JSON schema, one object per line:
{"time": "HH:MM:SS", "elapsed_s": float, "events_per_s": float, "events_total": int,
 "lost_events": int,   (events: a fault or a page allocated or freed is one, whether it
                        came alone or in a run; every other record is one)
 "lost_reasons": {"ring_full": int, "refused_with_room": int},
 "inodes": [{"ino": int, "size_pages": int, "init": "shared"|"private"|"unknown",
             "shared_pages": int, "private_pages": int, "unknown_pages": int,
             "resident_pages": int,
             "per_s": {each counter events.RATED names: float},
             "totals": {each counter events.COUNTERS names: int}}],
 "threads": [{"pid": int, "tid": int, "comm": str, "per_s": {...as above}}]}
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any, TextIO

from gmemtrace.events import RATED
from gmemtrace.model.rates import Rates
from gmemtrace.model.state import Model

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "time",
        "elapsed_s",
        "events_per_s",
        "events_total",
        "lost_events",
        "inodes",
        "threads",
    ],
    "properties": {
        "time": {"type": "string"},
        "elapsed_s": {"type": "number"},
        "events_per_s": {"type": "number"},
        "events_total": {"type": "integer"},
        "lost_events": {"type": "integer"},
        "inodes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "ino",
                    "size_pages",
                    "init",
                    "shared_pages",
                    "private_pages",
                    "unknown_pages",
                    "resident_pages",
                    "per_s",
                    "totals",
                ],
                "properties": {
                    "ino": {"type": "integer"},
                    "init": {"enum": ["shared", "private", "unknown"]},
                    "per_s": {"type": "object", "required": list(RATED)},
                    "totals": {"type": "object"},
                },
            },
        },
        "threads": {
            "type": "array",
            "items": {"type": "object", "required": ["pid", "tid", "comm", "per_s"]},
        },
    },
}


def interval_record(model: Model, rates: Rates, elapsed_s: float) -> dict[str, Any]:
    inodes = [
        asdict(model.inodes[ino].summary())
        | {
            "resident_pages": model.inodes[ino].resident.count(True),
            "per_s": {k: round(v, 3) for k, v in rates.inodes.get(ino, {}).items()}
            or dict.fromkeys(RATED, 0.0),
            "totals": dict(model.inodes[ino].counts),
        }
        for ino in sorted(model.inodes)
    ]
    threads = [
        {
            "pid": pid,
            "tid": tid,
            "comm": model.comms.get(pid, ""),
            "per_s": {k: round(v, 3) for k, v in per_s.items()},
        }
        for (pid, tid), per_s in sorted(rates.threads.items())
        if any(per_s.values())
    ]
    return {
        "time": time.strftime("%H:%M:%S"),
        "elapsed_s": round(elapsed_s, 3),
        "events_per_s": round(rates.events_per_s, 1),
        "events_total": model.events_applied,
        "lost_events": model.lost_events,
        "lost_reasons": model.lost_by_reason(),
        "inodes": inodes,
        "threads": threads,
    }


def write_json(out: TextIO, record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


COLUMNS = (
    ("INODE", "ino", 10),
    ("PAGES", "size_pages", 10),
    ("INIT", "init", 8),
    ("SHARED", "shared_pages", 9),
    ("PRIVATE", "private_pages", 9),
    ("RESIDENT", "resident_pages", 9),
)
RATE_COLUMNS = tuple((f"{c.short.upper()}/s", c.value) for c in RATED)


def write_plain(out: TextIO, record: dict[str, Any]) -> None:
    """A bcc-style interval table: a time line, a header, one row per inode."""
    reasons = record["lost_reasons"]
    lost = (
        f"  LOST {record['lost_events']} (ring full {reasons['ring_full']}, "
        f"refused with room {reasons['refused_with_room']})"
        if record["lost_events"]
        else ""
    )
    out.write(f"{record['time']}  {record['events_per_s']:.0f} events/s{lost}\n")
    if not record["inodes"]:
        out.write("  waiting for guest_memfd activity\n")
    else:
        header = "".join(f"{name:>{width}}" for name, _, width in COLUMNS)
        header += "".join(f"{name:>11}" for name, _ in RATE_COLUMNS)
        out.write(header + "\n")
        for inode in record["inodes"]:
            row = "".join(f"{inode[key]!s:>{width}}" for _, key, width in COLUMNS)
            row += "".join(f"{inode['per_s'][key]:>11.1f}" for _, key in RATE_COLUMNS)
            out.write(row + "\n")
    out.write("\n")
    out.flush()

"""The report: a model (live, or replayed from a trace file) as the JSON contract below
(sinks/report_table.py renders it as a table or CSV).

The JSON form is a contract for scripts:
{"trace": {"kernel", "duration_s" (start to stop of the recording, quiet time included),
           "lost_events", "lost_reasons": {"ring_full", "refused_with_room"}, "lost_windows",
           "pids" (those that touched a guest_memfd), "processes": [{"pid", "comm"}],
           "other_processes_seen", "complete", "problem"},
 "probes": {event: attach point},
 "inodes": [{"ino", "size_pages", "flags", "init", "shared_pages", "private_pages",
             "unknown_pages", "host_faults", "host_faults_refused", "host_faults_beyond_eof",
             "guest_faults",
             "pages_allocated", "pages_freed", "hole_punches", "conversions_to_shared",
             "conversions_to_private", "conversion_attempts",
             "shareability": [{"first", "count", "state", "from"}] (runs of pages in one
             state, from where the model knows it: creation flags, conversion, fault...)}],
 "conversions": [{"ts_ns", "pid", "tid", "ino", "first", "count", "to", "interface",
                  "result", "latency_ns", "blocking_page" (refused: the page that blocked
                  it, where the kernel tells), "noop" (every page had that state already)}],
 "memory_fault_exits": {"count", "exits": [{"ts_ns", "pid", "tid", "gpa", "size",
                                            "private", "ino", "page"}]},
 "explanations": [every refused fault and memory fault exit with its cause: the
                  contract in gmemtrace/model/explain.py]}
Shareability page counts are as of the end of the trace; the rest are totals.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from gmemtrace.events import Counter, Probe
from gmemtrace.model.explain import explain
from gmemtrace.model.state import MemoryFaultExit, Model
from gmemtrace.tracefile import TraceData, read_trace_file

INODE_FIELDS = (
    "ino",
    "size_pages",
    "flags",
    "init",
    "shared_pages",
    "private_pages",
    "unknown_pages",
    *Counter,
)


def model_of(data: TraceData) -> Model:
    """Rebuild the model from a trace file's events, exactly as the live collector did."""
    model = Model()
    model.apply(data.events)
    return model


def build_report(
    model: Model,
    kernel: str,
    probes: dict[str, Probe],
    start_ns: int,
    complete: bool = True,
    problem: str = "",
    now_ns: int | None = None,
) -> dict[str, Any]:
    """`now_ns`: where a capture still running stands (a live session); a stopped one ends
    at its END record, one cut short at its last event."""
    end_ns = now_ns or model.stopped_ns or model.last_ns or start_ns
    others = len(model.seen_pids - model.pids)
    # An inode number used twice (the first guest_memfd released) appears twice,
    # in order of creation, told apart by "generation".
    states = [*model.retired, *(model.inodes[ino] for ino in sorted(model.inodes))]
    seen: dict[int, int] = {}
    inodes = []
    for state in states:
        seen[state.ino] = seen.get(state.ino, -1) + 1
        runs = [
            {"first": first, "count": end - first, "state": share.value, "from": source.value}
            for first, end, (share, source) in state.shareability.runs()
        ]
        inodes.append(
            asdict(state.summary())
            | state.counts
            | {"generation": seen[state.ino], "shareability": runs}
        )
    return {
        "trace": {
            "kernel": kernel,
            "duration_s": round(max(end_ns - start_ns, 0) / 1e9, 6),
            "lost_events": model.lost_events,
            # why: no room (the consumer was behind), or refused with room (the ring's lock)
            "lost_reasons": model.lost_by_reason(),
            # where the counts are low: [from s, to s, events lost] since the start
            "lost_windows": [
                [round(max(a - start_ns, 0) / 1e9, 3), round((b - start_ns) / 1e9, 3), n]
                for a, b, n in model.lost_windows
            ],
            # the processes that touched a guest_memfd, with their names; how many others
            # the probes saw (forks and execs: every process, with no pid filter)
            "pids": sorted(model.pids),
            "processes": [{"pid": p, "comm": model.comms.get(p, "")} for p in sorted(model.pids)],
            "other_processes_seen": others,
            "complete": complete,
            "problem": problem,
        },
        "probes": {event: str(probe) for event, probe in probes.items()},
        "inodes": inodes,
        "conversions": [asdict(c) for c in model.conversions],
        # KVM_EXIT_MEMORY_FAULT: the guest wanted a range private (or shared) that is not;
        # ino/page: the guest_memfd page the gpa maps to, if a memslot binds it to one.
        "memory_fault_exits": {
            "count": len(model.memory_fault_exits),
            "exits": [_exit_row(e) for e in model.memory_fault_exits],
        },
        # every refused fault and memory fault exit, with its cause (model/explain.py)
        "explanations": explain(model, start_ns),
    }


def _exit_row(exit: MemoryFaultExit) -> dict[str, Any]:
    return {k: v for k, v in asdict(exit).items() if k not in ("state", "cause", "answer")}


def report_file(path: Path) -> dict[str, Any]:
    data = read_trace_file(path)
    model = model_of(data)
    return build_report(
        model,
        data.header.kernel,
        data.header.probes,
        data.header.start_ns,
        data.complete,
        data.problem,
    )

"""Why a fault was refused: each refused host fault, fault past the end of the file and
memory fault exit of a model, joined to its cause (the JSON contract below; the text
form is sinks/explain_text.py).

[{"n" (1, 2, ... in time order), "what": "refused" | "beyond_eof" | "memory_fault_exit",
  "ts_ns", "t_s" (since the trace's start),
  "who": {"pid", "tid", "comm", "address" (refusals) | "gpa", "size", "wants" (exits),
          "access" ("read", "write", "": not told)},
  "page": {"ino", "page" (null: not a guest_memfd page: no memslot binding seen covers
           the frame), "gfn" (exits), "state" (at that instant, as the trace knew it:
           for a frame outside guest_memfd, the VM's memory attributes)},
  "cause": {"what": "creation" | "conversion", "ts_ns", "t_s", "pid", "tid", "comm",
            "flags" (creation: the guest_memfd flags; size_pages past the end),
            "interface", "ino" (null: by guest frame, outside guest_memfd), "first",
            "count", "to", "result" ("ok" or the errno's name), "latency_ns" (conversion)}
           | null (nothing the trace saw put the page there),
  "answer": the conversion that answered an exit, as "cause" has one, with "waited_ns"
            (from the exit to the conversion's end) | null}]
"""

from __future__ import annotations

from typing import Any

from gmemtrace.events import result_name
from gmemtrace.kernel.uapi import PAGE_SIZE
from gmemtrace.model.state import (
    Cause,
    Conversion,
    MemoryFaultExit,
    Model,
    Provenance,
    Refusal,
    Refused,
)


def explain(model: Model, start_ns: int) -> list[dict[str, Any]]:
    """Every refusal and memory fault exit of `model`, with its cause, in time order."""
    items: list[tuple[int, dict[str, Any]]] = []
    for refusal in model.refused:
        items.append((refusal.ts_ns, _refusal(model, refusal, start_ns)))
    for exit in model.memory_fault_exits:
        items.append((exit.ts_ns, _exit(model, exit, start_ns)))
    items.sort(key=lambda item: item[0])
    return [{"n": n} | item for n, (_, item) in enumerate(items, 1)]


def _seconds(ts_ns: int, start_ns: int) -> float:
    return round((ts_ns - start_ns) / 1e9, 6)


def _refusal(model: Model, refusal: Refusal, start_ns: int) -> dict[str, Any]:
    beyond = refusal.reason is Refused.BEYOND_EOF
    state = model.inodes.get(refusal.ino)
    cause = _cause(model, refusal.cause, start_ns)
    if beyond and cause is not None and state is not None:
        cause["size_pages"] = state.size_pages
    return {
        "what": "beyond_eof" if beyond else "refused",
        "ts_ns": refusal.ts_ns,
        "t_s": _seconds(refusal.ts_ns, start_ns),
        "who": {
            "pid": refusal.pid,
            "tid": refusal.tid,
            "comm": model.comms.get(refusal.pid, ""),
            "address": refusal.address,
            "access": refusal.access,
        },
        "page": {
            "ino": refusal.ino,
            "page": refusal.page,
            "state": "past the end" if beyond else refusal.state.value,
        },
        "cause": cause,
        "answer": None,
    }


def _exit(model: Model, exit: MemoryFaultExit, start_ns: int) -> dict[str, Any]:
    answer = _conversion(model, exit.answer, start_ns) if exit.answer else None
    if answer is not None and exit.answer is not None:
        answer["waited_ns"] = exit.answer.ts_ns + exit.answer.latency_ns - exit.ts_ns
    located = exit.ino is not None and exit.page is not None
    return {
        "what": "memory_fault_exit",
        "ts_ns": exit.ts_ns,
        "t_s": _seconds(exit.ts_ns, start_ns),
        "who": {
            "pid": exit.pid,
            "tid": exit.tid,
            "comm": model.comms.get(exit.pid, ""),
            "gpa": exit.gpa,
            "size": exit.size,
            "wants": "private" if exit.private else "shared",
            "access": "",
        },
        "page": {
            "ino": exit.ino if located else None,
            "page": exit.page if located else None,
            "gfn": exit.gpa // PAGE_SIZE,
            "state": exit.state.value,
        },
        "cause": _cause(model, exit.cause, start_ns),
        "answer": answer,
    }


def _cause(model: Model, cause: Cause | None, start_ns: int) -> dict[str, Any] | None:
    if cause is None:
        return None
    if cause.what is Provenance.CONVERSION and cause.conversion is not None:
        return _conversion(model, cause.conversion, start_ns)
    return {
        "what": "creation",
        "ts_ns": cause.ts_ns,
        "t_s": _seconds(cause.ts_ns, start_ns),
        "pid": cause.pid,
        "tid": cause.tid,
        "comm": model.comms.get(cause.pid, "") if cause.pid is not None else "",
        "flags": cause.flags,
    }


def _conversion(model: Model, conversion: Conversion | None, start_ns: int) -> dict[str, Any]:
    assert conversion is not None
    return {
        "what": "conversion",
        "ts_ns": conversion.ts_ns,
        "t_s": _seconds(conversion.ts_ns, start_ns),
        "pid": conversion.pid,
        "tid": conversion.tid,
        "comm": model.comms.get(conversion.pid, ""),
        "interface": conversion.interface.value,
        "ino": conversion.ino,
        "first": conversion.first,
        "count": conversion.count,
        "to": conversion.to.value,
        "result": result_name(conversion.result),
        "latency_ns": conversion.latency_ns,
    }

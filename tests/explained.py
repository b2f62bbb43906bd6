"""What `explain` must say of a workload's refusals, from its ground truth: the op that put
each refused page in its state (an oracle of its own, over the ledger's ops)."""

from __future__ import annotations

from typing import Any

from gmemtrace.model.intervals import IntervalMap

Cause = tuple[Any, ...]  # ("creation",) or ("conversion", first, count, to)


def expected_causes(truth: dict[str, Any]) -> list[tuple[int, int, str, Cause]]:
    """(ino, page, what, cause) for every refusal the workload met, sorted."""
    out = []
    for inode in truth["inodes"]:
        causes: IntervalMap[Cause] = IntervalMap(inode["size_pages"], ("creation",))
        for op in inode["ops"]:
            first, count = op["first"], op["count"]
            if op["op"] == "convert" and op["errno"] == 0 and not op.get("noop"):
                causes.assign(first, first + count, ("conversion", first, count, op["to"]))
            elif op["op"] == "host_fault_refused":
                out.append((inode["ino"], first, "refused", causes.get(first)))
            elif op["op"] == "host_fault_beyond_eof":
                out.append((inode["ino"], first, "beyond_eof", ("creation",)))
    return sorted(out)


def explained_causes(explanations: list[dict[str, Any]]) -> list[tuple[int, int, str, Cause]]:
    """The same, as `explain` (or the report's "explanations") says it."""
    out = []
    for item in explanations:
        if item["what"] == "memory_fault_exit":
            continue
        cause = item["cause"]
        said: Cause = ("nothing",)
        if cause is not None and cause["what"] == "creation":
            said = ("creation",)
        elif cause is not None:
            said = ("conversion", cause["first"], cause["count"], cause["to"])
        out.append((item["page"]["ino"], item["page"]["page"], item["what"], said))
    return sorted(out)

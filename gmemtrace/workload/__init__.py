"""A small real VMM (ctypes over the KVM ioctls) doing guest_memfd work, with its ground truth."""

from __future__ import annotations

import time
from typing import Any

from gmemtrace.errors import GmemtraceError, UsageError
from gmemtrace.workload.runner import PATTERNS, Workload
from gmemtrace.workload.scenarios import CHECKS, SCENARIOS, VM_TYPES, Params

__all__ = ["PATTERNS", "SCENARIOS", "Params", "Workload", "run_scenario"]


def run_scenario(name: str, params: Params | None = None, hold_s: float = 0.0) -> dict[str, Any]:
    """Run a built-in scenario on real KVM and return its ground truth.

    `hold_s` keeps every guest_memfd alive (mapped, bound) that long before release,
    so a tracer can attach to, or watch, a workload that has already mapped its memory.
    """
    if name not in SCENARIOS:
        raise UsageError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    params = params or Params()
    if params.pattern not in PATTERNS:
        raise UsageError(f"unknown pattern {params.pattern!r}; choose from {', '.join(PATTERNS)}")
    for knob in ("pages", "rounds", "rate"):
        value = getattr(params, knob)
        if value is not None and value <= 0:
            raise UsageError(f"--{knob} must be positive, not {value}")
    try:
        workload = Workload(
            name, params.pause_after_map_s, params.wait_signal, VM_TYPES.get(name, 0)
        )
    except GmemtraceError:
        if name in CHECKS:
            CHECKS[name]()
        raise
    try:
        SCENARIOS[name](workload, params)
        if hold_s > 0:
            time.sleep(hold_s)
    finally:
        workload.close()
    return workload.ground_truth()

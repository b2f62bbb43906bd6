"""gmemtrace: an eBPF tracer for KVM guest_memfd memory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["SHIPPED_TRACES", "Session", "Trace", "read_trace", "tracing_available"]

# Recordings shipped with the package, for machines that cannot trace live.
SHIPPED_TRACES = {
    name: Path(__file__).resolve().parent / "data" / f"{name}.trace"
    for name in ("demo", "fault-storm", "inplace")
}

if TYPE_CHECKING:
    from gmemtrace.analysis import Trace, read_trace
    from gmemtrace.session import Session
    from gmemtrace.tracer import tracing_available


def __getattr__(name: str) -> Any:
    # pandas, pyarrow and bcc load only when the analysis API is used.
    if name == "Session":
        from gmemtrace.session import Session

        return Session
    if name == "tracing_available":
        from gmemtrace.tracer import tracing_available

        return tracing_available
    if name in __all__:
        from gmemtrace import analysis

        return getattr(analysis, name)
    raise AttributeError(name)

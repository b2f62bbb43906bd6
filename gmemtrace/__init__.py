"""gmemtrace: an eBPF tracer for KVM guest_memfd memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Session", "Trace", "read_trace"]

if TYPE_CHECKING:
    from gmemtrace.analysis import Trace, read_trace
    from gmemtrace.session import Session


def __getattr__(name: str) -> Any:
    # pandas, pyarrow and bcc load only when the analysis API is used.
    if name == "Session":
        from gmemtrace.session import Session

        return Session
    if name in __all__:
        from gmemtrace import analysis

        return getattr(analysis, name)
    raise AttributeError(name)

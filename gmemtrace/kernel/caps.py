"""The capabilities tracing needs, read from /proc/self/status."""

from __future__ import annotations

from pathlib import Path

PROC_STATUS = Path("/proc/self/status")
TRACING_CAPS = {"CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}


def effective(status: Path = PROC_STATUS) -> int:
    """The effective capability mask (0 when unreadable)."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def missing_for_tracing(status: Path = PROC_STATUS) -> list[str]:
    caps = effective(status)
    return [name for name, bit in TRACING_CAPS.items() if not caps >> bit & 1]

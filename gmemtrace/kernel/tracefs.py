"""Where tracefs is mounted, and mounting it when it is not (bcc reads tracepoint formats there)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

PROC_MOUNTS = Path("/proc/mounts")
DEFAULT_MOUNTPOINT = Path("/sys/kernel/tracing")


@dataclass(frozen=True)
class TracefsState:
    mountpoint: Path | None  # None: not mounted
    mounted_now: bool = False  # gmemtrace mounted it in this run
    error: str = ""  # why mounting failed


def find_mount(mounts: Path = PROC_MOUNTS) -> Path | None:
    """The first tracefs mount point listed in `mounts`."""
    try:
        for line in mounts.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2] == "tracefs":
                return Path(fields[1])
    except OSError:
        pass
    return None


def ensure_mounted(
    mounts: Path = PROC_MOUNTS, mountpoint: Path = DEFAULT_MOUNTPOINT
) -> TracefsState:
    """Mount tracefs at `mountpoint` unless it is mounted already; report what happened."""
    found = find_mount(mounts)
    if found is not None:
        return TracefsState(found)
    if not mountpoint.is_dir():
        return TracefsState(None, error=f"{mountpoint} does not exist")
    result = subprocess.run(
        ["mount", "-t", "tracefs", "nodev", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return TracefsState(
            None, error=result.stderr.strip() or f"mount exited {result.returncode}"
        )
    return TracefsState(mountpoint, mounted_now=True)

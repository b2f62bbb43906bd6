"""Kernel symbols from /proc/kallsyms (names only: addresses may be hidden)."""

from __future__ import annotations

from pathlib import Path

KALLSYMS = Path("/proc/kallsyms")


def symbols_containing(text: str, path: Path = KALLSYMS) -> list[str]:
    """Text symbols whose name contains `text`, without module suffixes, sorted."""
    found: set[str] = set()
    try:
        with path.open() as lines:
            for line in lines:
                if text not in line:
                    continue
                fields = line.split()
                if len(fields) >= 3 and fields[1] in "tTwW":
                    found.add(fields[2])
    except OSError:
        return []
    return sorted(found)

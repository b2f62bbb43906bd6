"""guest_memfd state that exists before gmemtrace attaches, read from /proc."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# What /proc names a guest_memfd: an anonymous inode until guest_memfd had a file system of
# its own (the in-place conversion series, 7.2 in the lab), then a file of that file system,
# unlinked from birth.
GMEM_NAMES = ("anon_inode:[kvm-gmem]", "/[kvm-gmem] (deleted)", "/[kvm-gmem]")


def is_gmem_name(name: str) -> bool:
    """Whether a file's name in /proc (a fd's link, a mapping's path) is a guest_memfd's."""
    return name in GMEM_NAMES


@dataclass(frozen=True)
class GmemFile:
    ino: int
    dev: int  # the kernel's encoding (MKDEV), as BPF programs see s_dev
    size: int


@dataclass(frozen=True)
class GmemMapping:
    start: int
    end: int
    ino: int
    pgoff: int


def kernel_dev(st_dev: int) -> int:
    """User space's dev_t -> the kernel's internal MKDEV(major, minor) = major << 20 | minor."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def gmem_files(pid: int, proc: Path = PROC) -> list[GmemFile]:
    """The guest_memfds the process holds open."""
    found: dict[int, GmemFile] = {}
    try:
        fds = list((proc / str(pid) / "fd").iterdir())
    except OSError:
        return []
    for fd in fds:
        try:
            if not is_gmem_name(os.readlink(fd)):
                continue
            st = fd.stat()
        except OSError:
            continue  # closed meanwhile
        found[st.st_ino] = GmemFile(st.st_ino, kernel_dev(st.st_dev), st.st_size)
    return list(found.values())


def gmem_mappings(pid: int, proc: Path = PROC) -> list[GmemMapping]:
    """The process's mappings of guest_memfds, from /proc/PID/maps."""
    try:
        lines = (proc / str(pid) / "maps").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split(maxsplit=5)  # address perms offset dev inode [path]
        if len(fields) < 6 or not is_gmem_name(fields[5]):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        out.append(GmemMapping(start, end, int(fields[4]), int(fields[2], 16) >> 12))
    return out


def descendants(pids: list[int], proc: Path = PROC) -> list[int]:
    """`pids` and every process below them, by parent pid."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def alive(pid: int, proc: Path = PROC) -> bool:
    """Whether the process runs: a zombie (exited, not yet reaped) does not."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def comm_of(pid: int, proc: Path = PROC) -> str:
    """The process's name ("" once it is gone)."""
    try:
        return (proc / str(pid) / "comm").read_text().rstrip("\n")
    except OSError:
        return ""


def processes_named(comm: str, proc: Path = PROC) -> list[int]:
    """Pids whose comm is `comm` (compared as the kernel stores it: 15 characters)."""
    found = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().rstrip("\n") == comm[:15]:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found

"""Compiling and loading in a short-lived child, so that the tracing process never holds bcc.

bcc and the LLVM inside it cost a process about 150 MB resident once a program is
compiled, and keep it for the process's life. The child (`python -m
gmemtrace.probes.loader_child`) checks the requirements, plans the probes, compiles, loads and
attaches, then hands over the descriptors that matter (the maps and the attachments)
through a Unix socket (SCM_RIGHTS) and exits without detaching.
The tracer keeps them in a HeldProgram (gmemtrace/probes/maps.py): its probes stay
attached exactly as long as it lives. Attachments are perf events and BPF links, both
released by the kernel when their last descriptor closes (kprobes through the kprobe PMU,
which every kernel with BPF ring buffers has): nothing outlives the tracer.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

from gmemtrace.errors import GmemtraceError
from gmemtrace.probes.maps import HeldProgram
from gmemtrace.probes.plan import Choice

CHILD = "gmemtrace.probes.loader_child"  # the child's side: compile, load, attach, hand over
MAX_MESSAGE = 1 << 20
MAX_FDS = 250  # SCM_MAX_FD is 253
LOAD_TIMEOUT_S = 600  # a cold bcc compile in the lab's emulated guest takes a minute


def load(
    force_tier: str | None, ringbuf_pages: int, ncpus: int
) -> tuple[HeldProgram, list[Choice]]:
    """The program, compiled, loaded and attached by the loader child; and the plan. Raises
    the child's GmemtraceError (a requirement not met: doctor's words, its exit code)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        child = subprocess.Popen(
            [sys.executable, "-m", CHILD, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            # Compiler chatter never mixes with our output. (Descriptor 2 itself: Jupyter's
            # sys.stderr has none.)
            stdout=2,
        )
        theirs.close()
        try:
            ours.sendall(json.dumps({"tier": force_tier, "ringbuf_pages": ringbuf_pages}).encode())
            ours.settimeout(LOAD_TIMEOUT_S)
            data, fds, _flags, _addr = socket.recv_fds(ours, MAX_MESSAGE, MAX_FDS)
        except BaseException:
            child.kill()
            child.wait()
            raise
        finally:
            status = child.wait()
    if not data:
        raise GmemtraceError(f"the probe loader exited with status {status} before loading")
    reply: dict[str, Any] = json.loads(data)
    if "error" in reply:
        for fd in fds:
            os.close(fd)
        raise GmemtraceError(reply["error"], reply.get("exit_code"))
    plan = [Choice.from_dict(c) for c in reply["plan"]]
    return HeldProgram.from_handover(reply, fds, ncpus), plan

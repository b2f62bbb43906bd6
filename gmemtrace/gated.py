"""A command gmemtrace starts: forked at once, held before exec until tracing is attached,
in a process group of its own so that it never outlives gmemtrace."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from gmemtrace.errors import UsageError

GRACE_S = 2.0  # between SIGTERM and SIGKILL when gmemtrace ends the command


class GatedCommand:
    """A command forked now but held before exec, so tracing is attached before it runs."""

    def __init__(self, argv: list[str], capture: bool = False) -> None:
        """`capture`: the command's stdout and stderr come back through `read_output()`."""
        if not argv:
            raise UsageError("no command given after --")
        self.argv = argv
        read_end, self._gate = os.pipe()
        out_read, out_write = os.pipe() if capture else (-1, -1)
        self.pid = os.fork()
        if self.pid == 0:  # the child: wait for the gate, then become the command
            os.close(self._gate)
            try:
                os.setpgid(0, 0)  # its own group: ending it ends what it started too
                if capture:
                    os.close(out_read)
                    os.dup2(out_write, 1)
                    os.dup2(out_write, 2)
                    os.close(out_write)
                os.read(read_end, 1)
                os.execvp(argv[0], argv)
            except OSError as err:
                os.write(2, f"gmemtrace: error: cannot run {argv[0]}: {err.strerror}\n".encode())
            os._exit(127)
        with contextlib.suppress(OSError):  # set on both sides: no race with a quick kill
            os.setpgid(self.pid, self.pid)
        os.close(read_end)
        self.output: int | None = None
        if capture:
            os.close(out_write)
            os.set_blocking(out_read, False)
            self.output = out_read
        self.returncode: int | None = None
        self.ended_by: str = ""  # how gmemtrace ended it ("": it ended by itself)

    def read_output(self) -> bytes:
        """What the command wrote since the last call (captured mode)."""
        if self.output is None:
            return b""
        chunks = []
        while True:
            try:
                chunk = os.read(self.output, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def start(self) -> None:
        os.write(self._gate, b"go")
        os.close(self._gate)
        self._gate = -1

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def end(self, grace_s: float = GRACE_S) -> None:
        """End the command's process group if the command still runs, as `timeout` does:
        SIGTERM, then SIGKILL after `grace_s`. Never leaves it waiting or orphaned."""
        if self._gate >= 0:  # never started: it dies at the closed gate
            os.close(self._gate)
            self._gate = -1
        if self.returncode is not None:
            return  # it ended by itself and was reaped: its group id may be another's now
        if not self._exited():
            self.ended_by = "SIGTERM"
            self._kill_group(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while not self._exited() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not self._exited():
                self.ended_by = "SIGKILL"
        # The leader is not reaped yet, so the group id is still the command's.
        self._kill_group(signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)

    def _exited(self) -> bool:
        """Whether the command exited, without reaping it (its pid stays reserved)."""
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, self.pid, flags) is not None

    def _kill_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    @property
    def exit_status(self) -> int:
        """The command's status as a shell reports it (128 + N: killed by signal N)."""
        code = self.returncode if self.returncode is not None else 0
        return 128 - code if code < 0 else code

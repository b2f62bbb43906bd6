"""The one user-facing error type and the documented exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNAVAILABLE = 1  # the machine cannot do what was asked (no KVM, no BPF, ...)
EXIT_USAGE = 2  # bad arguments or bad input files


class GmemtraceError(Exception):
    """A failure the user can act on: printed as one line, mapped to an exit code."""

    exit_code = EXIT_UNAVAILABLE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(GmemtraceError):
    """Bad command-line arguments or input."""

    exit_code = EXIT_USAGE

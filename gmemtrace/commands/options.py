"""Options several commands share, spelled the same everywhere (like the bcc tools)."""

from __future__ import annotations

import argparse

from gmemtrace.capture import Targets


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def comm_name(comm: str) -> str:
    """A process name as the kernel keeps it: 1 to 15 printable characters, no slash."""
    if not (0 < len(comm) <= 15 and comm.isprintable() and "/" not in comm):
        raise argparse.ArgumentTypeError(
            f"{comm!r}: a process name is 1 to 15 printable characters"
        )
    return comm


def add_targets(parser: argparse.ArgumentParser, comm: bool = False) -> None:
    """--pid and --duration (and --comm): what a capture traces, and for how long."""
    parser.add_argument(
        "-p",
        "--pid",
        type=int,
        action="append",
        default=[],
        metavar="PID",
        help="trace this process and its children (repeatable)",
    )
    parser.add_argument(
        "-d", "--duration", type=positive_float, metavar="SECONDS", help="stop after this long"
    )
    if comm:
        parser.add_argument(
            "--comm",
            type=comm_name,
            metavar="NAME",
            help="trace processes with this name, also ones that start later",
        )


def add_command(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help=what)


def add_tier(parser: argparse.ArgumentParser, what: str = "force one probe tier") -> None:
    from gmemtrace.probes.plan import FORCEABLE

    parser.add_argument("--tier", choices=[t.value for t in FORCEABLE], help=what)


def targets(args: argparse.Namespace) -> Targets:
    """The targets the options name; a command after `--` (the `--` itself dropped)."""
    command = list(getattr(args, "command", None) or [])
    if command[:1] == ["--"]:
        command = command[1:]
    return Targets(args.pid, getattr(args, "comm", None), command)

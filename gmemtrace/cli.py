"""Command-line parsing and subcommand dispatch; every failure becomes one line and an exit code."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from gmemtrace.errors import EXIT_OK, EXIT_USAGE, GmemtraceError, UsageError

EPILOG = """\
examples:
  gmemtrace doctor              # can this machine trace guest_memfd? what to fix
  gmemtrace doctor --json       # the same, for scripts
  gmemtrace workload mixed      # run the built-in VMM workload, print its ground truth
  gmemtrace workload fault-storm --pages 65536 --rounds 4 -o truth.json
  gmemtrace demo                # doctor, then the mixed workload

exit codes: 0 success, 1 the machine cannot do it (no KVM, no BPF, ...),
2 bad arguments or input, 130 interrupted.
"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser() -> Parser:
    from gmemtrace.workload import PATTERNS, SCENARIOS

    parser = Parser(
        prog="gmemtrace",
        description="eBPF tracer for KVM guest_memfd memory: shareability, faults, conversions.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    doctor = commands.add_parser("doctor", help="check what this machine allows, and how to fix it")
    doctor.add_argument("--json", action="store_true", help="print the diagnosis as JSON")

    workload = commands.add_parser(
        "workload",
        help="run the built-in VMM workload on real KVM and print its ground truth",
        description="A small VMM doing real guest_memfd work: "
        + "; ".join(
            f"{name}: {fn.__doc__.splitlines()[0]}" for name, fn in SCENARIOS.items() if fn.__doc__
        ),
    )
    workload.add_argument(
        "scenario",
        choices=list(SCENARIOS),
        metavar="SCENARIO",
        help=f"one of {', '.join(SCENARIOS)}",
    )
    workload.add_argument("--pages", type=_positive_int, help="pages to work on (scenario default)")
    workload.add_argument(
        "--rounds", type=_positive_int, help="rounds to repeat (scenario default)"
    )
    workload.add_argument(
        "--rate",
        type=_positive_float,
        help="host touches per second (default: as fast as possible)",
    )
    workload.add_argument(
        "--pattern", choices=PATTERNS, default="sequential", help="order of host touches"
    )
    workload.add_argument(
        "--hold",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep the memory mapped this long before releasing it",
    )
    workload.add_argument("-o", "--output", type=Path, help="write the ground truth JSON here")
    workload.add_argument("--json", action="store_true", help="print the ground truth JSON")

    commands.add_parser("demo", help="doctor, then the mixed workload and its ground truth")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def _console() -> Console:
    # Not a terminal: wide enough that tables stay tables in logs and CI.
    return Console() if sys.stdout.isatty() else Console(width=int(os.environ.get("COLUMNS", 140)))


def cmd_doctor(args: argparse.Namespace) -> int:
    from gmemtrace.doctor import diagnose
    from gmemtrace.sinks.doctor_table import doctor_table

    diagnosis = diagnose()
    if args.json:
        print(json.dumps(diagnosis.to_json(), indent=2))
    else:
        _console().print(doctor_table(diagnosis))
    return EXIT_OK if diagnosis.can_trace else 1


def _write_json(path: Path, data: Any) -> None:
    try:
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror}") from None


def cmd_workload(args: argparse.Namespace) -> int:
    from gmemtrace.sinks.truth_table import truth_table
    from gmemtrace.workload import Params, run_scenario

    params = Params(pages=args.pages, rounds=args.rounds, rate=args.rate, pattern=args.pattern)
    truth = run_scenario(args.scenario, params, hold_s=args.hold)
    if args.output:
        _write_json(args.output, truth)
    if args.json:
        print(json.dumps(truth, indent=2))
    else:
        _console().print(truth_table(truth))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from gmemtrace.doctor import diagnose
    from gmemtrace.sinks.doctor_table import doctor_table
    from gmemtrace.sinks.truth_table import truth_table
    from gmemtrace.workload import run_scenario

    console = _console()
    console.print(doctor_table(diagnose()))
    console.print()
    console.print(truth_table(run_scenario("mixed")))
    return EXIT_OK


COMMANDS = {"doctor": cmd_doctor, "workload": cmd_workload, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `gmemtrace ... | head` ends quietly
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return EXIT_USAGE
        return COMMANDS[args.command](args)
    except GmemtraceError as err:
        print(f"gmemtrace: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130

"""Command-line parsing and subcommand dispatch; every failure becomes one line and an exit code."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from gmemtrace.errors import GmemtraceError, UsageError

if TYPE_CHECKING:
    from gmemtrace.commands import Command

EPILOG = """\
examples:
  gmemtrace --pid 1234          # live view of a running VMM (Ctrl-C ends it with a summary)
  gmemtrace --comm qemu-system-x86 -i 2 --sort refused
  gmemtrace -o vm.trace -- qemu-system-x86_64 ...   # start a VMM under the view, recording
  gmemtrace --pid 1234 --json -d 10 | jq .           # one JSON object per interval
  gmemtrace doctor              # can this machine trace guest_memfd? what to fix
  gmemtrace doctor --json       # the same, for scripts
  gmemtrace workload mixed      # run the built-in VMM workload, print its ground truth
  gmemtrace workload fault-storm --pages 65536 --rounds 4 -o truth.json
  gmemtrace demo                # doctor, then the mixed workload
  gmemtrace probes              # which probe serves each event on this kernel, and why
  gmemtrace record -o t.trace -- gmemtrace workload mixed
  gmemtrace record -p 1234 -d 10 -o vmm.trace
  gmemtrace report t.trace --format json
  gmemtrace explain t.trace     # why each refused fault and memory fault exit happened
  gmemtrace exporter            # Prometheus metrics at http://127.0.0.1:9464/metrics

exit codes: 0 success, 1 the machine cannot do it (no KVM, no BPF, ...),
2 bad arguments or input, 130 interrupted.
"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


# Every named command, in `gmemtrace --help`'s order (main() knows them by name before it
# imports any: each module imports what it needs to run only when it runs).
NAMES = (
    *("doctor", "workload", "record", "report", "explain", "probes", "demo", "exporter"),
    "completion",
)


def commands() -> dict[str, Command]:
    from gmemtrace.commands.completion import Completion
    from gmemtrace.commands.demo import Demo
    from gmemtrace.commands.doctor import Doctor
    from gmemtrace.commands.explain import ExplainCommand
    from gmemtrace.commands.exporter import ExporterCommand
    from gmemtrace.commands.probes import Probes
    from gmemtrace.commands.record import Record
    from gmemtrace.commands.report import ReportCommand
    from gmemtrace.commands.workload import WorkloadCommand

    found: list[Command] = [
        Doctor(),
        WorkloadCommand(),
        Record(),
        ReportCommand(),
        ExplainCommand(),
        Probes(),
        Demo(),
        ExporterCommand(),
        Completion(build_completion_parser),
    ]
    assert tuple(c.name for c in found) == NAMES
    return {c.name: c for c in found}


def build_parser() -> Parser:
    """Every named command's parser, from the commands themselves (commands/)."""
    parser = Parser(
        prog="gmemtrace",
        description="eBPF tracer for KVM guest_memfd memory: shareability, faults, conversions.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=Parser)
    for name, command in commands().items():
        sub = subparsers.add_parser(name, help=command.help, description=command.description)
        command.prepare_parser(sub)
    return parser


def build_live_parser() -> Parser:
    from gmemtrace.commands.live import Live

    live = Live()
    parser = Parser(
        prog="gmemtrace",
        description=live.description,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    live.prepare_parser(parser)
    return parser


def build_completion_parser() -> Parser:
    """What a shell completes: the subcommands, and the live view's options beside them."""
    from gmemtrace.commands.live import Live

    parser = build_parser()
    Live().prepare_parser(parser, with_command=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `gmemtrace ... | head` ends quietly
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv and argv[0] in NAMES:
            args = build_parser().parse_args(argv)
            return commands()[args.subcommand].run(args)
        from gmemtrace.commands.live import Live

        args = build_live_parser().parse_args(argv)
        if args.command and args.command[0] != "--":
            raise UsageError(
                f"unknown command {args.command[0]!r}; commands: {', '.join(NAMES)} "
                "(a program to trace goes after --)"
            )
        return Live().run(args)
    except GmemtraceError as err:
        print(f"gmemtrace: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130

"""Command-line parsing and subcommand dispatch; every failure becomes one line and an exit code."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from gmemtrace.errors import EXIT_OK, GmemtraceError, UsageError

if TYPE_CHECKING:  # rich loads only for the commands that print with it
    from rich.console import Console

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
  gmemtrace exporter            # Prometheus metrics at http://127.0.0.1:9464/metrics

exit codes: 0 success, 1 the machine cannot do it (no KVM, no BPF, ...),
2 bad arguments or input, 130 interrupted.
"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser() -> Parser:
    from gmemtrace.probes.plan import FORCEABLE
    from gmemtrace.workload import PATTERNS, SCENARIOS

    parser = Parser(
        prog="gmemtrace",
        description="eBPF tracer for KVM guest_memfd memory: shareability, faults, conversions.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=Parser)

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
    workload.add_argument(
        "--pause-after-map",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="pause once the first guest_memfd is mapped (to attach late)",
    )
    workload.add_argument(
        "--wait-signal",
        action="store_true",
        help="once the first guest_memfd is mapped, wait for SIGUSR1",
    )
    workload.add_argument("-o", "--output", type=Path, help="write the ground truth JSON here")
    workload.add_argument("--json", action="store_true", help="print the ground truth JSON")
    workload.add_argument("-q", "--quiet", action="store_true", help="print nothing")

    record = commands.add_parser(
        "record",
        help="record guest_memfd events to a trace file",
        description="Record guest_memfd events. With -- CMD, CMD starts under trace and the "
        "recording stops when it exits; without --pid or CMD, every process is traced.",
    )
    _add_target_options(record)
    record.add_argument("-o", "--output", type=Path, required=True, help="the trace file")
    record.add_argument("--tier", choices=FORCEABLE, help="force one probe tier")
    record.add_argument("--json", action="store_true", help="print the report as JSON at the end")
    record.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD ARGS",
        help="a command to start under trace",
    )

    report = commands.add_parser("report", help="summarise a trace file")
    report.add_argument("trace", type=Path, metavar="FILE")
    report.add_argument("--format", choices=("table", "json", "csv"), default="table")

    probes = commands.add_parser("probes", help="show which probe serves each event here, and why")
    probes.add_argument("--tier", choices=FORCEABLE, help="plan with only this tier")
    probes.add_argument("--json", action="store_true")
    probes.add_argument(
        "--ebpf",
        action="store_true",
        help="print the BPF C as compiled here (defines from BTF), then exit",
    )

    demo = commands.add_parser(
        "demo", help="the live view of the built-in workload (a recorded one without KVM/BPF)"
    )
    demo.add_argument("-d", "--duration", type=_positive_float, default=20.0, metavar="SECONDS")
    demo.add_argument("--replay", action="store_true", help="replay the shipped trace anyway")

    exporter = commands.add_parser(
        "exporter",
        help="serve guest_memfd metrics to Prometheus (and push them over OTLP)",
        description="A long-running exporter: every guest_memfd on the host (or those of "
        "--pid/--comm, also processes that start later), served as Prometheus/OpenMetrics "
        "text at http://ADDR:PORT/metrics. SIGTERM, SIGHUP or Ctrl-C end it (exit 0).",
    )
    _add_target_options(exporter)
    _add_comm_option(exporter)
    exporter.add_argument(
        "--listen",
        default="127.0.0.1:9464",
        metavar="ADDR:PORT",
        help="where to serve /metrics (default 127.0.0.1:9464; every interface: 0.0.0.0:9464)",
    )
    exporter.add_argument(
        "--keep-released",
        type=_non_negative_float,
        default=60.0,
        metavar="SECONDS",
        help="keep a released guest_memfd's series this long (default 60)",
    )
    exporter.add_argument(
        "--otlp",
        metavar="URL",
        help="also push over OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/metrics",
    )
    exporter.add_argument(
        "--otlp-interval",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between OTLP pushes (default 10)",
    )
    exporter.add_argument("--tier", choices=FORCEABLE, help="force one probe tier")

    completion = commands.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for SHELL, e.g. "
        "gmemtrace completion bash > /etc/bash_completion.d/gmemtrace",
    )
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"), metavar="SHELL")
    return parser


def build_live_parser() -> Parser:
    parser = Parser(
        prog="gmemtrace",
        description="Live view of guest_memfd memory: shareability maps, fault rates, "
        "conversions. Subcommands: record, report, probes, doctor, workload, demo, exporter, "
        "completion (gmemtrace COMMAND --help).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_live_options(parser)
    return parser


def build_completion_parser() -> Parser:
    """What a shell completes: the subcommands, and the live view's options beside them."""
    parser = build_parser()
    _add_live_options(parser, with_command=False)
    return parser


def _add_live_options(parser: argparse.ArgumentParser, with_command: bool = True) -> None:
    from gmemtrace.sinks.dashboard import SORT_KEYS

    _add_target_options(parser)
    _add_comm_option(parser)
    parser.add_argument(
        "-i",
        "--interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="rate interval (default 1)",
    )
    parser.add_argument("-o", "--output", type=Path, help="also record to this trace file")
    parser.add_argument(
        "--sort",
        choices=sorted(SORT_KEYS),
        default="host",
        help="order inodes and threads by this rate (default host)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--no-live",
        action="store_true",
        help="a plain table per interval (the default when not on a terminal)",
    )
    output.add_argument("--json", action="store_true", help="one JSON object per interval")
    if with_command:
        parser.add_argument(
            "command",
            nargs=argparse.REMAINDER,
            metavar="-- CMD ARGS",
            help="a command to start under the view; the view ends with it",
        )


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    """--pid and --duration, as every tracing command spells them (like the bcc tools)."""
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
        "-d", "--duration", type=_positive_float, metavar="SECONDS", help="stop after this long"
    )


def _add_comm_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--comm",
        type=_comm,
        metavar="NAME",
        help="trace processes with this name, also ones that start later",
    )


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


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def _console() -> Console:
    from gmemtrace.sinks.console import make_console

    return make_console()


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

    params = Params(
        pages=args.pages,
        rounds=args.rounds,
        rate=args.rate,
        pattern=args.pattern,
        pause_after_map_s=args.pause_after_map,
        wait_signal=args.wait_signal,
    )
    truth = run_scenario(args.scenario, params, hold_s=args.hold)
    if args.output:
        _write_json(args.output, truth)
    if args.json:
        print(json.dumps(truth, indent=2))
    elif not args.quiet:
        _console().print(truth_table(truth))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from gmemtrace.demo import demo

    return demo(args.duration, force_replay=args.replay)


def cmd_live(args: argparse.Namespace) -> int:
    from gmemtrace import live

    mode = "json" if args.json else "plain" if args.no_live or not live.is_terminal() else "live"
    if args.command and args.command[0] != "--":
        raise UsageError(
            f"unknown command {args.command[0]!r}; commands: {', '.join(COMMANDS)} "
            "(a program to trace goes after --)"
        )
    command = args.command[1:]
    return live.run(
        live.Options(
            pids=args.pid,
            comm=args.comm,
            command=command,
            interval_s=args.interval,
            duration_s=args.duration,
            output=args.output,
            sort=args.sort,
            mode=mode,
        )
    )


def _comm(comm: str) -> str:
    """A process name as the kernel keeps it: 1 to 15 printable characters, no slash."""
    if not (0 < len(comm) <= 15 and comm.isprintable() and "/" not in comm):
        raise argparse.ArgumentTypeError(
            f"{comm!r}: a process name is 1 to 15 printable characters"
        )
    return comm


def cmd_record(args: argparse.Namespace) -> int:
    from gmemtrace.record import record

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return record(args.output, args.pid, command, args.tier, args.duration, as_json=args.json)


def cmd_report(args: argparse.Namespace) -> int:
    from gmemtrace.report import report_file
    from gmemtrace.sinks.report_table import to_csv, to_table

    report = report_file(args.trace)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    elif args.format == "csv":
        sys.stdout.write(to_csv(report))
    else:
        _console().print(to_table(report))
    if not report["trace"]["complete"]:
        print(f"gmemtrace: warning: {args.trace}: {report['trace']['problem']}", file=sys.stderr)
    return EXIT_OK


def cmd_probes(args: argparse.Namespace) -> int:
    from gmemtrace.probes.plan import plan_dicts
    from gmemtrace.sinks.plan_table import plan_table
    from gmemtrace.tracer import prepare

    if args.ebpf:
        from gmemtrace.probes.bcc_backend import program_text
        from gmemtrace.probes.plan import function_events
        from gmemtrace.probes.tracepoints import SOURCES, program_defines
        from gmemtrace.tracer import RINGBUF_PAGES

        setup = prepare(args.tier)
        defines = program_defines(
            setup.btf, RINGBUF_PAGES, function_events(setup.plan), setup.tracefs
        )
        print("\n".join(f"#define {name} {value}" for name, value in defines.items()))
        print(program_text(*SOURCES))
        return EXIT_OK
    setup = prepare(args.tier)
    if args.json:
        print(json.dumps(plan_dicts(setup.plan), indent=2))
    else:
        _console().print(plan_table(setup.plan))
    return EXIT_OK


def cmd_exporter(args: argparse.Namespace) -> int:
    from gmemtrace import exporter

    return exporter.run(
        exporter.Options(
            pids=args.pid,
            comm=args.comm,
            listen=args.listen,
            keep_released_s=args.keep_released,
            otlp=args.otlp,
            otlp_interval_s=args.otlp_interval,
            tier=args.tier,
            duration_s=args.duration,
        )
    )


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab  # generates the script from the parsers, so it never falls behind them

    parser = build_completion_parser()
    for action in _walk_actions(parser):
        if action.type is Path:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
    print(shtab.complete(parser, shell=args.shell), end="")
    return EXIT_OK


def _walk_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    found = []
    for action in parser._actions:
        found.append(action)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_walk_actions(sub))
    return found


COMMANDS = {
    "doctor": cmd_doctor,
    "workload": cmd_workload,
    "demo": cmd_demo,
    "record": cmd_record,
    "report": cmd_report,
    "probes": cmd_probes,
    "exporter": cmd_exporter,
    "completion": cmd_completion,
}


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `gmemtrace ... | head` ends quietly
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv and argv[0] in COMMANDS:
            args = build_parser().parse_args(argv)
            return COMMANDS[args.subcommand](args)
        return cmd_live(build_live_parser().parse_args(argv))
    except GmemtraceError as err:
        print(f"gmemtrace: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130

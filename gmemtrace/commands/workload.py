"""`gmemtrace workload SCENARIO`: the built-in VMM on real KVM, and its ground truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gmemtrace.commands.options import positive_float, positive_int
from gmemtrace.errors import EXIT_OK, UsageError
from gmemtrace.sinks.render import Format, Report


def write_json(path: Path, data: Any) -> None:
    try:
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror}") from None


class WorkloadCommand:
    name = "workload"
    help = "run the built-in VMM workload on real KVM and print its ground truth"

    def __init__(self) -> None:
        from gmemtrace.workload import SCENARIOS

        self.description = "A small VMM doing real guest_memfd work: " + "; ".join(
            f"{name}: {fn.__doc__.splitlines()[0]}" for name, fn in SCENARIOS.items() if fn.__doc__
        )

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        from gmemtrace.workload import PATTERNS, SCENARIOS

        parser.add_argument(
            "scenario",
            choices=list(SCENARIOS),
            metavar="SCENARIO",
            help=f"one of {', '.join(SCENARIOS)}",
        )
        parser.add_argument(
            "--pages", type=positive_int, help="pages to work on (scenario default)"
        )
        parser.add_argument(
            "--rounds", type=positive_int, help="rounds to repeat (scenario default)"
        )
        parser.add_argument(
            "--rate",
            type=positive_float,
            help="host touches per second (default: as fast as possible)",
        )
        parser.add_argument(
            "--pattern", choices=PATTERNS, default="sequential", help="order of host touches"
        )
        parser.add_argument(
            "--hold",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="keep the memory mapped this long before releasing it",
        )
        parser.add_argument(
            "--pause-after-map",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="pause once the first guest_memfd is mapped (to attach late)",
        )
        parser.add_argument(
            "--wait-signal",
            action="store_true",
            help="once the first guest_memfd is mapped, wait for SIGUSR1",
        )
        parser.add_argument("-o", "--output", type=Path, help="write the ground truth JSON here")
        parser.add_argument("--json", action="store_true", help="print the ground truth JSON")
        parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")

    def run(self, args: argparse.Namespace) -> int:
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
            write_json(args.output, truth)
        if args.json or not args.quiet:
            Report(truth, lambda: truth_table(truth)).render(
                Format.JSON if args.json else Format.TABLE
            )
        return EXIT_OK

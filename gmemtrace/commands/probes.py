"""`gmemtrace probes`: which probe serves each event on this kernel, and why."""

from __future__ import annotations

import argparse

from gmemtrace.commands.options import add_tier
from gmemtrace.errors import EXIT_OK
from gmemtrace.sinks.render import Format, Report


class Probes:
    name = "probes"
    help = "show which probe serves each event here, and why"
    description = ""

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        add_tier(parser, "plan with only this tier")
        parser.add_argument("--json", action="store_true")
        parser.add_argument(
            "--ebpf",
            action="store_true",
            help="print the BPF C as compiled here (defines from BTF), then exit",
        )

    def run(self, args: argparse.Namespace) -> int:
        from gmemtrace.probes.plan import fentry_functions, function_events, plan_dicts, prepare
        from gmemtrace.sinks.plan_table import plan_table

        setup = prepare(args.tier)
        if args.ebpf:
            from gmemtrace.probes.bcc_backend import program_text
            from gmemtrace.probes.program import SOURCES, program_defines
            from gmemtrace.tracer import RINGBUF_PAGES

            functions = function_events(setup.plan)
            fentry = fentry_functions(setup.plan)
            defines = program_defines(setup.btf, RINGBUF_PAGES, functions, setup.tracefs, fentry)
            print("\n".join(f"#define {name} {value}" for name, value in defines.items()))
            print(program_text(*SOURCES))
            return EXIT_OK
        report = Report(plan_dicts(setup.plan), lambda: plan_table(setup.plan))
        report.render(Format.JSON if args.json else Format.TABLE)
        return EXIT_OK

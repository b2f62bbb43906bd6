"""`gmemtrace doctor`: can this machine trace guest_memfd, and what to fix."""

from __future__ import annotations

import argparse

from gmemtrace.errors import EXIT_OK
from gmemtrace.sinks.render import Format, Report


class Doctor:
    name = "doctor"
    help = "check what this machine allows, and how to fix it"
    description = ""

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the diagnosis as JSON")

    def run(self, args: argparse.Namespace) -> int:
        from gmemtrace.doctor import diagnose
        from gmemtrace.sinks.doctor_table import doctor_table

        diagnosis = diagnose()
        report = Report(diagnosis.to_json(), lambda: doctor_table(diagnosis))
        report.render(Format.JSON if args.json else Format.TABLE)
        return EXIT_OK if diagnosis.can_trace else 1

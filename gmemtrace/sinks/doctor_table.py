"""`gmemtrace doctor` as a rich table with a verdict line."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gmemtrace.doctor import FAIL, INFO, OK, WARN, Diagnosis

STATUS_STYLE = {OK: "bold green", WARN: "bold yellow", FAIL: "bold red", INFO: "cyan"}


def doctor_table(d: Diagnosis) -> RenderableType:
    table = Table(
        title=f"gmemtrace doctor: kernel {d.facts.get('kernel', '?')}", title_justify="left"
    )
    table.add_column("requirement", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    table.add_column("fix", overflow="fold")
    for check in d.checks:
        table.add_row(
            check.name,
            Text(check.status, style=STATUS_STYLE[check.status]),
            check.detail,
            check.fix,
        )
    if d.can_trace:
        verdict = Text("tracing can work on this machine", style="bold green")
    else:
        verdict = Text(f"tracing cannot work: {'; '.join(d.blockers)}", style="bold red")
    return Group(table, verdict)

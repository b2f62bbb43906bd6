"""`gmemtrace probes`: the probe plan as a table."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from gmemtrace.probes.plan import Choice


def plan_table(plan: list[Choice]) -> Table:
    table = Table(title="gmemtrace probe plan", title_justify="left")
    table.add_column("event", no_wrap=True)
    table.add_column("tier", no_wrap=True)
    table.add_column("attach point", overflow="fold")
    table.add_column("better tiers rejected", overflow="fold")
    for choice in plan:
        tier = Text(choice.tier or "unavailable", style="green" if choice.tier else "red")
        rejected = "; ".join(f"{tier}: {why}" for tier, why in choice.rejected)
        table.add_row(choice.event, tier, choice.attach, rejected)
    return table

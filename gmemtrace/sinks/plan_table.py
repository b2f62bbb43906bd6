"""`gmemtrace probes`: the probe plan as a table."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from gmemtrace.events import UNAVAILABLE, Tier
from gmemtrace.probes.plan import Choice


def plan_table(plan: list[Choice]) -> Table:
    table = Table(title="gmemtrace probe plan", title_justify="left")
    table.add_column("event", no_wrap=True)
    table.add_column("tier", no_wrap=True)
    table.add_column("attach point", overflow="fold")
    table.add_column("better tiers rejected", overflow="fold")
    for choice in plan:
        tier = Text(choice.tier or UNAVAILABLE, style="green" if choice.tier else "red")
        rejected = "; ".join(f"{tiers}: {why}" for why, tiers in _by_reason(choice.rejected))
        table.add_row(choice.event, tier, choice.attach, rejected)
    return table


def _by_reason(rejected: list[tuple[Tier, str]]) -> list[tuple[str, str]]:
    """[(why, "tier, tier")]: tiers rejected for the same reason said once."""
    grouped: dict[str, list[str]] = {}
    for tier, why in rejected:
        grouped.setdefault(why, []).append(tier)
    return [(why, ", ".join(tiers)) for why, tiers in grouped.items()]

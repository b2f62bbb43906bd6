"""HTML for Jupyter: a trace's summary, inode table and shareability maps as pictures (SVG)."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from gmemtrace.events import Counter
from gmemtrace.model.state import InodeState, Model, Share
from gmemtrace.sinks.palette import STATE_HEX

COLOURS = STATE_HEX
MAX_MAPS = 12


def shareability_svg(state: InodeState, width: int = 640, height: int = 18) -> str:
    """The inode's pages as a bar: shareability as colour, residency as a dark band under it."""
    size = max(state.size_pages, 1)
    rects = []
    for first, end, (share, why) in state.shareability.runs():
        x, w = first / size * width, max((end - first) / size * width, 0.5)
        title = html.escape(f"pages {first}-{end - 1}: {share.value} ({why})")
        rects.append(
            f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{height}" '
            f'fill="{COLOURS[share]}"><title>{title}</title></rect>'
        )
    for first, end, resident in state.resident.runs():
        if resident:
            x, w = first / size * width, max((end - first) / size * width, 0.5)
            rects.append(
                f'<rect x="{x:.2f}" y="{height}" width="{w:.2f}" height="5" '
                f'fill="#222"><title>resident {first}-{end - 1}</title></rect>'
            )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 6}" '
        f'style="background:#eee">{"".join(rects)}</svg>'
    )


def trace_html(report: dict[str, Any], inodes: pd.DataFrame, model: Model) -> str:
    """A trace's report, inode table and the busiest inodes' maps, as HTML."""
    info = report["trace"]
    status = "complete" if info["complete"] else f"incomplete: {html.escape(info['problem'])}"
    parts = [
        f"<h4>gmemtrace trace: kernel {html.escape(info['kernel'])}, {info['duration_s']:.3f} s, "
        f"{len(report['inodes'])} guest_memfd inodes, lost events {info['lost_events']}, "
        f"{status}</h4>",
        inodes.to_html() if len(report["inodes"]) else "<p>no guest_memfd activity</p>",
        "<p>"
        + "".join(f'<span style="color:{STATE_HEX[s]}">&#9632; {s.value}</span> ' for s in Share)
        + "&#9644; resident pages</p>",
    ]
    for state in sorted(model.inodes.values(), key=lambda s: -s.counts[Counter.HOST_FAULTS])[
        :MAX_MAPS
    ]:
        parts.append(
            f"<div><code>ino {state.ino}, {state.size_pages} pages</code><br>"
            f"{shareability_svg(state)}</div>"
        )
    return "\n".join(parts)

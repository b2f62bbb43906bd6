"""Plot helpers on a recorded trace: the figures carry the expected axes, series and counts."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

import gmemtrace
from gmemtrace import plots

matplotlib.use("Agg")
TRACE = Path(__file__).resolve().parents[1] / "data" / "mixed.trace"


@pytest.fixture(scope="module")
def trace() -> gmemtrace.Trace:
    return gmemtrace.read_trace(TRACE)


def test_fault_rate_has_a_line_per_faulting_inode_summing_to_the_totals(
    trace: gmemtrace.Trace,
) -> None:
    fig = plots.fault_rate(trace, freq="10ms")
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("time") and ax.get_ylabel() == "faults per second"
    lines = {line.get_label(): line for line in ax.lines}
    for ino, state in trace.model.inodes.items():
        for series, counter in (("host", "host_faults"), ("guest", "guest_faults")):
            label = f"{series} inode {ino}"
            if state.counts[counter] == 0:
                assert label not in lines
                continue
            rates = np.asarray(lines[label].get_ydata())
            assert round(rates.sum() * 0.01) == state.counts[counter]


def test_fault_rate_by_pid(trace: gmemtrace.Trace) -> None:
    fig = plots.fault_rate(trace, by="pid")
    labels = {line.get_label() for line in fig.axes[0].lines}
    assert any(label.startswith("host pid ") for label in labels)
    with pytest.raises(ValueError):
        plots.fault_rate(trace, by="colour")


def test_shareability_over_time_colours_and_marks(trace: gmemtrace.Trace) -> None:
    private = next(s for s in trace.model.inodes.values() if s.init.value == "private")
    fig = plots.shareability_over_time(trace, private.ino)
    ax = fig.axes[0]
    image = ax.images[0].get_array()
    assert image.shape[0] == private.size_pages
    assert (np.asarray(image)[:, -1] == plots.PRIVATE).all()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "refused fault" in labels and "private" in labels
    shared = max(trace.model.inodes.values(), key=lambda s: s.counts["host_faults"])
    fig = plots.shareability_over_time(trace, shared.ino)
    faults = fig.axes[0].collections[0].get_offsets()
    assert len(faults) == shared.counts["host_faults"]
    assert len(fig.axes[0].collections) >= 2, "the conversion request is drawn"


def test_resident_pages_end_at_zero_after_release(trace: gmemtrace.Trace) -> None:
    fig = plots.resident_pages(trace)
    lines = fig.axes[0].lines
    assert len(lines) == sum(1 for s in trace.model.inodes.values() if s.counts["pages_allocated"])
    for line in lines:
        y = np.asarray(line.get_ydata())
        assert y.max() > 0 and y[-1] == 0


def test_latency_histograms(trace: gmemtrace.Trace) -> None:
    fig = plots.latency(trace)
    titles = {ax.get_title() for ax in fig.axes}
    assert titles == {f"{k} latency" for k in trace.model.latency}
    counted = sum(p.get_height() for ax in fig.axes for p in ax.patches)
    assert counted == sum(sum(h.values()) for h in trace.model.latency.values())


def test_trace_html_has_table_and_a_map_per_inode(trace: gmemtrace.Trace) -> None:
    page = trace._repr_html_()
    assert "<table" in page and page.count("<svg") == len(trace.model.inodes)
    assert "#b03ab0" in page  # a private map

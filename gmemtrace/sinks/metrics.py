"""The exporter's metrics: one table of names and kinds, and the samples of one scrape.

gmemtrace/fleet.py fills the samples from the model; Prometheus (sinks/prometheus.py)
and OpenTelemetry (sinks/otlp.py) both render them; neither knows the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gmemtrace.events import Counter
from gmemtrace.model.state import Refused

NS = 1_000_000_000


@dataclass(frozen=True)
class Metric:
    """One metric family: its name as served (counters end in _total, info metrics in
    _info; a histogram's series add _bucket, _sum and _count), its kind (counter, gauge,
    histogram, info), what it means, and its labels."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()


INODE = ("ino", "gen", "pid", "comm")  # a guest_memfd: gen tells apart reuses of one number

# The one table: the Prometheus and OTLP sinks, the README's metric table and the
# Grafana dashboard's test read it.
METRICS = (
    Metric("gmemtrace_host_faults_total", "counter", "Host faults on guest_memfd pages", INODE),
    Metric(
        "gmemtrace_host_faults_refused_total",
        "counter",
        "Host faults answered with SIGBUS (reason: private page, or beyond the end of the file)",
        (*INODE, "reason"),
    ),
    Metric("gmemtrace_guest_faults_total", "counter", "Guest faults on guest_memfd pages", INODE),
    Metric("gmemtrace_pages_allocated_total", "counter", "Pages allocated", INODE),
    Metric("gmemtrace_pages_freed_total", "counter", "Pages freed", INODE),
    Metric("gmemtrace_hole_punches_total", "counter", "Successful hole punches", INODE),
    Metric(
        "gmemtrace_conversions_total",
        "counter",
        "Conversion requests (direction: to_shared or to_private; result: ok or the errno)",
        (*INODE, "direction", "result"),
    ),
    Metric(
        "gmemtrace_conversion_duration_seconds",
        "histogram",
        "Time the kernel took to answer a conversion request",
        (*INODE, "direction"),
    ),
    Metric(
        "gmemtrace_pages",
        "gauge",
        "Pages by shareability (state: shared, private, unknown)",
        (*INODE, "state"),
    ),
    Metric("gmemtrace_resident_pages", "gauge", "Pages in memory", INODE),
    Metric(
        "gmemtrace_guest_memfd_info",
        "info",
        "A guest_memfd: size in pages, creation flags, initial shareability",
        (*INODE, "size_pages", "flags", "init"),
    ),
    Metric(
        "gmemtrace_released",
        "gauge",
        "1: the guest_memfd was released (its series go after the grace period)",
        INODE,
    ),
    Metric(
        "gmemtrace_memory_fault_exits_total",
        "counter",
        "KVM_EXIT_MEMORY_FAULT exits: the guest wanted memory the other way (to: private or "
        "shared)",
        ("pid", "comm", "to"),
    ),
    Metric(
        "gmemtrace_lost_events_total",
        "counter",
        "Events the kernel could not hand over (reason: ring_full, refused_with_room)",
        ("reason",),
    ),
    Metric("gmemtrace_events_total", "counter", "Events applied (a run counts its pages)"),
    Metric("gmemtrace_guest_memfds", "gauge", "guest_memfds exported (released ones included)"),
    Metric("gmemtrace_traced_processes", "gauge", "Processes seen doing guest_memfd work, alive"),
    Metric(
        "gmemtrace_probe_info",
        "info",
        "The probe serving each event on this kernel (tier: kprobe, tracepoint, unavailable)",
        ("event", "tier", "attach"),
    ),
    Metric("gmemtrace_up", "gauge", "1 once every probe is attached (0 while attaching)"),
    Metric(
        "gmemtrace_collect_seconds",
        "gauge",
        "Time the previous scrape took to read the model (the exporter's own cost)",
    ),
)
BY_NAME = {m.name: m for m in METRICS}

# Conversion durations: 1 us to 10 s, as a kernel answer spans (a few pages to gigabytes).
DURATION_BUCKETS = (1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 0.1, 1.0, 10.0)

# Model counter -> (metric, extra labels).
COUNTER_METRICS: dict[Counter, tuple[str, tuple[tuple[str, str], ...]]] = {
    Counter.HOST_FAULTS: ("gmemtrace_host_faults_total", ()),
    Counter.HOST_FAULTS_REFUSED: (
        "gmemtrace_host_faults_refused_total",
        (("reason", Refused.PRIVATE.value),),
    ),
    Counter.HOST_FAULTS_BEYOND_EOF: (
        "gmemtrace_host_faults_refused_total",
        (("reason", Refused.BEYOND_EOF.value),),
    ),
    Counter.GUEST_FAULTS: ("gmemtrace_guest_faults_total", ()),
    Counter.PAGES_ALLOCATED: ("gmemtrace_pages_allocated_total", ()),
    Counter.PAGES_FREED: ("gmemtrace_pages_freed_total", ()),
    Counter.HOLE_PUNCHES: ("gmemtrace_hole_punches_total", ()),
}

Labels = tuple[tuple[str, str], ...]


@dataclass
class Histogram:
    """Bucket counts (cumulative when read), sum and count, in seconds."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    count: int = 0
    sum: float = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
        self.count += 1
        self.sum += seconds


@dataclass
class Samples:
    """Every sample of one scrape: {metric: {labels: value}}, histograms apart."""

    values: dict[str, dict[Labels, float]] = field(default_factory=dict)
    histograms: dict[str, dict[Labels, Histogram]] = field(default_factory=dict)

    def add(self, metric: str, labels: Labels, value: float) -> None:
        family = self.values.setdefault(metric, {})
        family[labels] = family.get(labels, 0) + value

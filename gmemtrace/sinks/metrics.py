"""The exporter's metrics: one table of names, and the samples a model gives them now.

`Fleet` turns the model into what a long-running exporter serves: per guest_memfd
counters and gauges (labels ino, gen, pid, comm), conversions by direction and
result with a duration histogram, memory fault exits per VMM, losses and the
exporter's own health. It keeps counters monotonic, holds a released guest_memfd
for a grace period so that the last scrape sees its totals, then forgets it (in the
model too: an agent that runs for months must not grow). Prometheus (sinks/prometheus.py)
and OpenTelemetry (sinks/otlp.py) both render these samples; neither knows the model.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field

from gmemtrace.kernel.procfs import alive, comm_of
from gmemtrace.model.state import Conversion, InodeState, Model, Share

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
        "Events the kernel could not hand over (reason: ring_full, or refused with room)",
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
_COUNTERS = {
    "host_faults": ("gmemtrace_host_faults_total", ()),
    "host_faults_refused": ("gmemtrace_host_faults_refused_total", (("reason", "private"),)),
    "host_faults_beyond_eof": (
        "gmemtrace_host_faults_refused_total",
        (("reason", "beyond_eof"),),
    ),
    "guest_faults": ("gmemtrace_guest_faults_total", ()),
    "pages_allocated": ("gmemtrace_pages_allocated_total", ()),
    "pages_freed": ("gmemtrace_pages_freed_total", ()),
    "hole_punches": ("gmemtrace_hole_punches_total", ()),
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


@dataclass
class _Tracked:
    """A guest_memfd as exported: its labels, and when it was found released."""

    state: InodeState
    labels: Labels
    released_ns: int | None = None


def direction(conversion: Conversion) -> str:
    return "to_private" if conversion.to == Share.PRIVATE else "to_shared"


def result_label(result: int) -> str:
    return "ok" if result == 0 else errno.errorcode.get(-result, str(-result))


@dataclass
class Fleet:
    """What the exporter serves, kept from a model (call update() with the model locked)."""

    keep_released_ns: int = 60 * NS
    probes: dict[str, str] = field(default_factory=dict)  # event -> "tier: attach"
    up: bool = False
    collect_s: float = 0.0
    _tracked: dict[int, _Tracked] = field(default_factory=dict)  # id(state) -> tracked
    _generations: dict[int, int] = field(default_factory=dict)  # ino -> inodes seen with it
    _conversions: dict[Labels, float] = field(default_factory=dict)
    _durations: dict[Labels, Histogram] = field(default_factory=dict)
    _exits: dict[Labels, float] = field(default_factory=dict)
    _high: dict[tuple[str, Labels], float] = field(default_factory=dict)  # counters never fall
    _pids_gone: dict[int, int] = field(default_factory=dict)  # pid -> when it was seen gone
    _next_release_check_ns: int = 0
    _alive: int = 0  # processes seen doing guest_memfd work, alive at the last check
    # Called with each conversion's labels (direction included) and duration in seconds:
    # a sink that aggregates on its own (OpenTelemetry's histogram).
    listeners: list[Callable[[Labels, float], None]] = field(default_factory=list)

    def update(self, model: Model, now_ns: int) -> None:
        """Take in what the model learnt since the last call; release, then forget, what
        has gone. Conversions and exits are counted here and dropped from the model."""
        for state in [*model.retired, *model.inodes.values()]:
            if id(state) not in self._tracked:
                self._track(state, model)
        conversions, exits = model.take_logs()
        for conversion in conversions:
            self._count_conversion(conversion, model)
        for exit_ in exits:
            to = "private" if exit_.private else "shared"
            key = (("pid", str(exit_.pid)), ("comm", self._comm(exit_.pid, model)), ("to", to))
            self._exits[key] = self._exits.get(key, 0) + 1
        if now_ns >= self._next_release_check_ns:  # /proc reads: once a second is enough
            self._next_release_check_ns = now_ns + NS
            self._release_and_forget(model, now_ns)

    def _track(self, state: InodeState, model: Model) -> None:
        gen = self._generations.get(state.ino, 0)
        self._generations[state.ino] = gen + 1
        pid = state.pid
        labels = (
            ("ino", str(state.ino)),
            ("gen", str(gen)),
            ("pid", "" if pid is None else str(pid)),
            ("comm", "" if pid is None else self._comm(pid, model)),
        )
        self._tracked[id(state)] = _Tracked(state, labels)

    @staticmethod
    def _comm(pid: int, model: Model) -> str:
        """The name the events carried, else /proc's (a VMM found already running)."""
        return model.comms.get(pid) or comm_of(pid)

    def _inode_labels(self, ino: int | None, pid: int, model: Model) -> Labels:
        """The labels of the guest_memfd a conversion names (the newest with that number)."""
        if ino is not None:
            for tracked in reversed(self._tracked.values()):
                if tracked.state.ino == ino:
                    return tracked.labels
        # Not one a binding seen maps to: the VMM's, with no inode.
        return (("ino", ""), ("gen", ""), ("pid", str(pid)), ("comm", self._comm(pid, model)))

    def _count_conversion(self, conversion: Conversion, model: Model) -> None:
        labels = self._inode_labels(conversion.ino, conversion.pid, model)
        way = (("direction", direction(conversion)),)
        key = (*labels, *way, ("result", result_label(conversion.result)))
        self._conversions[key] = self._conversions.get(key, 0) + 1
        seconds = conversion.latency_ns / NS
        self._durations.setdefault((*labels, *way), Histogram()).observe(seconds)
        for listener in self.listeners:
            listener((*labels, *way), seconds)

    def _release_and_forget(self, model: Model, now_ns: int) -> None:
        """A guest_memfd is released at its last close (function tier) or when the process
        that created it is gone (what the tracepoint tier can tell); its series stay for
        keep_released_ns, then it is forgotten, with its process once that holds none."""
        for key, tracked in list(self._tracked.items()):
            state = tracked.state
            gone = state.released_ns is not None or (state.pid is not None and not alive(state.pid))
            if tracked.released_ns is None and gone:
                tracked.released_ns = now_ns
            if tracked.released_ns is not None and now_ns - tracked.released_ns >= (
                self.keep_released_ns
            ):
                del self._tracked[key]
                model.forget_inode(state)
                self._forget_series(tracked.labels)
        held = {t.state.pid for t in self._tracked.values()}
        self._alive = 0
        for pid in list(model.per_pid):
            running = alive(pid)
            self._alive += running
            if pid in held or running:
                self._pids_gone.pop(pid, None)
                continue
            gone_ns = self._pids_gone.setdefault(pid, now_ns)
            if now_ns - gone_ns >= self.keep_released_ns:
                del self._pids_gone[pid]
                model.forget_process(pid)
                self._forget_series((("pid", str(pid)),))
        model.forget_bystanders(alive)

    def _forget_series(self, labels: Labels) -> None:
        """Drop every kept series carrying all of `labels`."""
        wanted = set(labels)
        for table in (self._conversions, self._durations, self._exits):
            for key in [k for k in table if wanted <= set(k)]:
                del table[key]
        for high in [k for k in self._high if wanted <= set(k[1])]:
            del self._high[high]

    # --- one scrape ----------------------------------------------------------
    def samples(self, model: Model) -> Samples:
        """Every sample as of now (call with the model locked)."""
        out = Samples()
        for tracked in self._tracked.values():
            self._inode_samples(out, tracked)
        for key, n in self._conversions.items():
            out.add("gmemtrace_conversions_total", key, n)
        out.histograms["gmemtrace_conversion_duration_seconds"] = dict(self._durations)
        for key, n in self._exits.items():
            out.add("gmemtrace_memory_fault_exits_total", key, n)
        refused, lost = model.lost_refused, "gmemtrace_lost_events_total"
        out.add(lost, (("reason", "ring_full"),), model.lost_events - refused)
        out.add(lost, (("reason", "refused"),), refused)
        out.add("gmemtrace_events_total", (), model.events_applied)
        out.add("gmemtrace_guest_memfds", (), len(self._tracked))
        out.add("gmemtrace_traced_processes", (), self._alive)  # as of the last check
        for event, where in self.probes.items():
            tier, _, attach = where.partition(": ")
            probe = (("event", event), ("tier", tier), ("attach", attach))
            out.add("gmemtrace_probe_info", probe, 1)
        out.add("gmemtrace_up", (), 1 if self.up else 0)
        out.add("gmemtrace_collect_seconds", (), self.collect_s)
        self._monotonic(out)
        return out

    def _inode_samples(self, out: Samples, tracked: _Tracked) -> None:
        state, labels = tracked.state, tracked.labels
        for counter, (metric, extra) in _COUNTERS.items():
            out.add(metric, (*labels, *extra), state.counts[counter])
        for share in Share:
            out.add("gmemtrace_pages", (*labels, ("state", share.value)), state.pages(share))
        out.add("gmemtrace_resident_pages", labels, state.resident.count(True))
        info = (
            ("size_pages", str(state.size_pages)),
            ("flags", "" if state.flags is None else hex(state.flags)),
            ("init", state.init.value),
        )
        out.add("gmemtrace_guest_memfd_info", (*labels, *info), 1)
        out.add("gmemtrace_released", labels, 0 if tracked.released_ns is None else 1)

    def _monotonic(self, out: Samples) -> None:
        """A counter never goes down between scrapes (the model may take back a fault it
        counted before its refusal arrived in the next batch)."""
        for metric, family in out.values.items():
            if BY_NAME[metric].kind != "counter":
                continue
            for labels, value in family.items():
                high = max(self._high.get((metric, labels), 0), value)
                self._high[(metric, labels)] = family[labels] = high

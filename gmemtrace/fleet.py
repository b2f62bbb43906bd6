"""What a long-running exporter serves, kept from the model: its retention policy.

`Fleet` turns the model into the exporter's samples (sinks/metrics.py names them): per
guest_memfd counters and gauges (labels ino, gen, pid, comm), conversions by direction
and result with a duration histogram, memory fault exits per VMM, losses and the
exporter's own health. It keeps counters monotonic, holds a released guest_memfd for a
grace period so that the last scrape sees its totals, then forgets it (in the model
too: an agent that runs for months must not grow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gmemtrace.events import UNAVAILABLE, Probe, result_name
from gmemtrace.kernel.procfs import alive, comm_of
from gmemtrace.model.state import Conversion, InodeState, Model, Share
from gmemtrace.sinks.metrics import BY_NAME, COUNTER_METRICS, NS, Histogram, Labels, Samples


@dataclass
class _Tracked:
    """A guest_memfd as exported: its labels, and when it was found released."""

    state: InodeState
    labels: Labels
    released_ns: int | None = None


def direction(conversion: Conversion) -> str:
    return f"to_{conversion.to.value}"


@dataclass
class Fleet:
    """What the exporter serves, kept from a model (call update() with the model locked)."""

    keep_released_ns: int = 60 * NS
    probes: dict[str, Probe] = field(default_factory=dict)
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
        key = (*labels, *way, ("result", result_name(conversion.result)))
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
        for reason, n in model.lost_by_reason().items():
            out.add("gmemtrace_lost_events_total", (("reason", reason.value),), n)
        out.add("gmemtrace_events_total", (), model.events_applied)
        out.add("gmemtrace_guest_memfds", (), len(self._tracked))
        out.add("gmemtrace_traced_processes", (), self._alive)  # as of the last check
        for event, served in self.probes.items():
            tier = served.tier.value if served.tier else UNAVAILABLE
            probe = (("event", event), ("tier", tier), ("attach", served.attach))
            out.add("gmemtrace_probe_info", probe, 1)
        out.add("gmemtrace_up", (), 1 if self.up else 0)
        out.add("gmemtrace_collect_seconds", (), self.collect_s)
        self._monotonic(out)
        return out

    def _inode_samples(self, out: Samples, tracked: _Tracked) -> None:
        state, labels = tracked.state, tracked.labels
        for counter, (metric, extra) in COUNTER_METRICS.items():
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

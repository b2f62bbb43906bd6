"""The fleet exporter: `gmemtrace exporter [--pid PID]... [--comm NAME] [--listen ADDR:PORT]`.

A long-running capture (gmemtrace/capture.py) with runs coalesced in the kernel (the
traced VMs pay what the live view's do), drained a few times a second into the model;
sinks/metrics.py keeps what is served from it, sinks/prometheus.py serves it at
/metrics and sinks/otlp.py pushes it over OTLP/HTTP. /metrics answers from the start
(gmemtrace_up 0 while the probes attach). SIGINT, SIGTERM and SIGHUP end it: probes
detached, the last OTLP push made, exit status 0.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gmemtrace.capture import Capture, StopFlag
from gmemtrace.errors import EXIT_OK
from gmemtrace.model.state import Model
from gmemtrace.sinks.metrics import NS, Fleet, Samples
from gmemtrace.sinks.prometheus import DEFAULT_LISTEN, parse_listen, serve

PUMP_INTERVAL_S = 0.1
# 8 MiB of ring buffer, not the recorder's 64: runs are coalesced in the kernel, drained
# ten times a second, and the ring is mapped twice here (resident: twice its size).
RINGBUF_PAGES = 2048


@dataclass
class Options:
    pids: list[int] = field(default_factory=list)
    comm: str | None = None
    listen: str = DEFAULT_LISTEN
    keep_released_s: float = 60.0
    otlp: str | None = None  # an OTLP/HTTP metrics endpoint, e.g. http://collector:4318/v1/metrics
    otlp_interval_s: float = 10.0
    tier: str | None = None
    duration_s: float | None = None


class Exporter:
    """The fleet state, and the one lock under which the model is changed and read."""

    def __init__(self, keep_released_s: float) -> None:
        self.fleet = Fleet(keep_released_ns=int(keep_released_s * NS))
        self.model = Model()  # an empty one until the probes are attached
        self.lock = threading.Lock()

    def samples(self) -> Samples:
        """One scrape's samples (the scrape's own cost is served at the next one)."""
        started = time.perf_counter()
        with self.lock:
            samples = self.fleet.samples(self.model)
            self.fleet.collect_s = time.perf_counter() - started
        return samples


def run(options: Options) -> int:
    listen = parse_listen(options.listen)
    if options.otlp:
        from gmemtrace.sinks.otlp import check_url

        check_url(options.otlp)
    stop = StopFlag()  # from the start: a signal while attaching still ends it cleanly
    deadline = time.monotonic() + options.duration_s if options.duration_s else None
    exporter = Exporter(options.keep_released_s)
    server, bound = serve(listen, exporter.samples)
    pusher = None
    try:
        if options.otlp:
            from gmemtrace.sinks.otlp import OtlpPusher

            pusher = OtlpPusher(options.otlp, options.otlp_interval_s, exporter.samples)
            exporter.fleet.listeners.append(pusher.conversion)
        capture = Capture(
            options.pids,
            options.comm,
            tier=options.tier,
            stream_hot=False,
            handle_signals=False,
            ringbuf_pages=RINGBUF_PAGES,
        )
        try:
            _export(capture, exporter, options, bound, lambda: _stop(stop, deadline))
        finally:
            capture.finish()
    finally:
        if pusher is not None:
            pusher.close()  # the last push: totals up to the end
        server.shutdown()  # type: ignore[attr-defined]
    return EXIT_OK


def _stop(flag: StopFlag, deadline: float | None) -> bool:
    return flag.requested or (deadline is not None and time.monotonic() >= deadline)


def _export(
    capture: Capture,
    exporter: Exporter,
    options: Options,
    bound: tuple[str, int],
    stop: Callable[[], bool],
) -> None:
    collector = capture.collector
    with exporter.lock:
        exporter.model = collector.model
        exporter.fleet.probes = dict(capture.header.probes)
        exporter.fleet.up = True
    host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    url = f"http://{host}:{bound[1]}/metrics"
    print(capture.ready_note("Exporting", url), file=sys.stderr, flush=True)

    def tick() -> None:
        capture.follow_comm()
        with exporter.lock:
            exporter.fleet.update(collector.model, time.monotonic_ns())

    # The collector's pump takes the same lock: a scrape never reads a half-applied batch.
    collector.lock = exporter.lock
    collector.run(stop, PUMP_INTERVAL_S, on_tick=tick)
    with exporter.lock:
        exporter.fleet.update(collector.model, time.monotonic_ns())

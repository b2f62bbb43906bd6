"""The fleet exporter: `gmemtrace exporter [--pid PID]... [--comm NAME] [--listen ADDR:PORT]`.

A long-running capture (gmemtrace/capture.py) with hot events counted in the kernel (the
traced VMs pay what the live view's do), read a few times a second into the model;
sinks/metrics.py keeps what is served from it, sinks/prometheus.py serves it at
/metrics and sinks/otlp.py pushes it over OTLP/HTTP. /metrics answers from the start
(gmemtrace_up 0 while the probes attach). SIGINT, SIGTERM and SIGHUP end it: probes
detached, the last OTLP push made, exit status 0.
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass, field

from gmemtrace.capture import PUMP_S, Capture, StopRule, Targets
from gmemtrace.commands.options import (
    add_targets,
    add_tier,
    non_negative_float,
    positive_float,
    targets,
)
from gmemtrace.errors import EXIT_OK
from gmemtrace.fleet import Fleet
from gmemtrace.model.state import Model
from gmemtrace.sinks.metrics import NS, Samples
from gmemtrace.sinks.prometheus import DEFAULT_LISTEN, parse_listen, serve

# 8 MiB of ring buffer, not the recorder's 64: hot events are counted in the kernel, the
# ring has the rare ones, and it is mapped twice here (resident: twice its size).
EXPORT_RINGBUF_PAGES = 2048


@dataclass
class Options:
    targets: Targets = field(default_factory=Targets)
    listen: str = DEFAULT_LISTEN
    keep_released_s: float = 60.0
    otlp: str | None = None  # an OTLP/HTTP metrics endpoint, e.g. http://collector:4318/v1/metrics
    otlp_interval_s: float = 10.0
    tier: str | None = None
    duration_s: float | None = None


class Exporter:
    """The fleet state kept from a capture's model, served under the capture's lock."""

    def __init__(self, capture: Capture, keep_released_s: float) -> None:
        self.capture = capture
        self.fleet = Fleet(keep_released_ns=int(keep_released_s * NS))
        self._before = (threading.Lock(), Model())  # until the probes are attached

    def _locked(self) -> tuple[threading.Lock, Model]:
        """The lock and model a scrape reads: the collector's once attached (its pump
        takes the same lock: a scrape never reads a half-applied batch)."""
        collector = getattr(self.capture, "collector", None)
        return (collector.lock, collector.model) if collector is not None else self._before

    def samples(self) -> Samples:
        """One scrape's samples (the scrape's own cost is served at the next one)."""
        started = time.perf_counter()
        lock, model = self._locked()
        with lock:
            self.fleet.up = model is not self._before[1]
            if self.fleet.up:
                self.fleet.probes = dict(self.capture.header.probes)
            samples = self.fleet.samples(model)
            self.fleet.collect_s = time.perf_counter() - started
        return samples

    def update(self) -> None:
        """Keep what the model says now (the fleet's retention: released guest_memfds and
        gone processes kept for a while, then forgotten)."""
        lock, model = self._locked()
        with lock:
            self.fleet.update(model, time.monotonic_ns())


def run(options: Options) -> int:
    listen = parse_listen(options.listen)
    if options.otlp:
        from gmemtrace.sinks.otlp import check_url

        check_url(options.otlp)
    # The stop rule from the start: a signal while the probes attach still ends it cleanly.
    with StopRule(options.duration_s) as stop:
        capture = Capture(
            options.targets,
            tier=options.tier,
            stream_hot=False,
            stop=stop,
            ringbuf_pages=EXPORT_RINGBUF_PAGES,
            ready="Exporting",
        )
        exporter = Exporter(capture, options.keep_released_s)
        server, bound = serve(listen, exporter.samples)
        host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        capture.into = f"http://{host}:{bound[1]}/metrics"
        pusher = None
        try:
            if options.otlp:
                from gmemtrace.sinks.otlp import OtlpPusher

                pusher = OtlpPusher(options.otlp, options.otlp_interval_s, exporter.samples)
                exporter.fleet.listeners.append(pusher.conversion)
            with capture:
                capture.run(PUMP_S["export"], on_tick=exporter.update)
                exporter.update()
        finally:
            if pusher is not None:
                pusher.close()  # the last push: totals up to the end
            server.shutdown()  # type: ignore[attr-defined]
    return EXIT_OK


class ExporterCommand:
    name = "exporter"
    help = "serve guest_memfd metrics to Prometheus (and push them over OTLP)"
    description = (
        "A long-running exporter: every guest_memfd on the host (or those of --pid/--comm, "
        "also processes that start later), served as Prometheus/OpenMetrics text at "
        "http://ADDR:PORT/metrics. SIGTERM, SIGHUP or Ctrl-C end it (exit 0)."
    )

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        add_targets(parser, comm=True)
        parser.add_argument(
            "--listen",
            default=DEFAULT_LISTEN,
            metavar="ADDR:PORT",
            help="where to serve /metrics (default 127.0.0.1:9464; every interface: 0.0.0.0:9464)",
        )
        parser.add_argument(
            "--keep-released",
            type=non_negative_float,
            default=60.0,
            metavar="SECONDS",
            help="keep a released guest_memfd's series this long (default 60)",
        )
        parser.add_argument(
            "--otlp",
            metavar="URL",
            help="also push over OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/metrics",
        )
        parser.add_argument(
            "--otlp-interval",
            type=positive_float,
            default=10.0,
            metavar="SECONDS",
            help="seconds between OTLP pushes (default 10)",
        )
        add_tier(parser)

    def run(self, args: argparse.Namespace) -> int:
        return run(
            Options(
                targets(args),
                listen=args.listen,
                keep_released_s=args.keep_released,
                otlp=args.otlp,
                otlp_interval_s=args.otlp_interval,
                tier=args.tier,
                duration_s=args.duration,
            )
        )

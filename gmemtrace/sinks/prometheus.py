"""Prometheus: the exporter's samples served at /metrics by the official client library
(Prometheus text and OpenMetrics, whichever the scraper asks for)."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector

from gmemtrace.errors import GmemtraceError, UsageError
from gmemtrace.sinks.metrics import DURATION_BUCKETS, METRICS, Samples
from gmemtrace.sinks.metrics import Metric as MetricSpec

DEFAULT_LISTEN = "127.0.0.1:9464"


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT (an IPv6 address in brackets) -> (address, port). The address is never
    implied: serving on every interface takes asking for 0.0.0.0 or [::]."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {text!r}: expected ADDR:PORT, e.g. {DEFAULT_LISTEN}")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        raise UsageError(f"--listen {text!r}: {host!r} is not an IP address") from None
    return host, int(port)


class FleetCollector:
    """A prometheus_client collector that reads the samples at each scrape."""

    def __init__(self, read: Callable[[], Samples]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        samples = self.read()
        for metric in METRICS:
            if metric.kind == "histogram":
                yield _histogram(metric, samples)
            elif metric.kind == "info":
                yield _info(metric, samples)
            else:
                yield _value(metric, samples)


def _histogram(metric: MetricSpec, samples: Samples) -> Metric:
    family = HistogramMetricFamily(metric.name, metric.help, labels=list(metric.labels))
    for key, hist in samples.histograms.get(metric.name, {}).items():
        bounds = zip(DURATION_BUCKETS, hist.buckets, strict=True)
        buckets = [(repr(b), float(n)) for b, n in bounds] + [("+Inf", float(hist.count))]
        family.add_metric([v for _, v in key], buckets, hist.sum)
    return family


def _info(metric: MetricSpec, samples: Samples) -> Metric:
    base = metric.name.removesuffix("_info")
    family = InfoMetricFamily(base, metric.help, labels=list(metric.labels))
    for key in samples.values.get(metric.name, {}):
        family.add_metric([v for _, v in key], {})
    return family


def _value(metric: MetricSpec, samples: Samples) -> Metric:
    kind = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
    family = kind(metric.name, metric.help, labels=list(metric.labels))
    for key, value in samples.values.get(metric.name, {}).items():
        family.add_metric([v for _, v in key], value)
    return family


def serve(listen: tuple[str, int], read: Callable[[], Samples]) -> tuple[object, tuple[str, int]]:
    """Serve /metrics on `listen` in a thread: (the server, the address it is bound to)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # the exporter's own memory and CPU
    registry.register(FleetCollector(read))
    host, port = listen
    try:
        server, _thread = start_http_server(port, host, registry)
    except OSError as err:
        reason = "address already in use" if err.errno == errno.EADDRINUSE else err.strerror
        raise GmemtraceError(f"--listen {host}:{port}: {reason}") from None
    bound = server.socket.getsockname()
    return server, (host, int(bound[1]))

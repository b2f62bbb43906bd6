"""OpenTelemetry: the exporter's samples pushed over OTLP/HTTP (protobuf) by the OpenTelemetry
SDK, every `interval` seconds and once more at the end.

The names are the Prometheus ones, counters without the `_total` that Prometheus adds
(an OpenTelemetry Collector's Prometheus exporter puts it back); the labels are the
attributes. Counters and gauges are observed from the same samples a scrape reads;
the conversion duration histogram is recorded as each conversion is counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlparse

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from gmemtrace.errors import UsageError
from gmemtrace.sinks.metrics import DURATION_BUCKETS, METRICS, Labels, Metric, Samples

SNAPSHOT_TTL_S = 0.5  # one export reads every instrument: from one set of samples


def otlp_name(metric: Metric) -> str:
    return metric.name.removesuffix("_total") if metric.kind == "counter" else metric.name


def check_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(
            f"--otlp {url!r}: expected an OTLP/HTTP metrics URL, e.g. http://127.0.0.1:4318/v1/metrics"
        )
    return url


class OtlpPusher:
    def __init__(self, url: str, interval_s: float, read: Callable[[], Samples]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._taken: tuple[float, Samples] | None = None
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=check_url(url), timeout=5),
            export_interval_millis=interval_s * 1000,
        )
        self.provider = MeterProvider(
            metric_readers=[reader],
            resource=Resource.create({"service.name": "gmemtrace"}),
            views=[
                View(
                    instrument_name="gmemtrace_conversion_duration_seconds",
                    aggregation=ExplicitBucketHistogramAggregation(boundaries=DURATION_BUCKETS),
                )
            ],
        )
        meter = self.provider.get_meter("gmemtrace")
        for metric in METRICS:
            name, callbacks = otlp_name(metric), [self._observer(metric.name)]
            if metric.kind == "histogram":
                self._durations = meter.create_histogram(name, unit="s", description=metric.help)
            elif metric.kind == "counter":
                meter.create_observable_counter(name, callbacks, description=metric.help)
            else:
                meter.create_observable_gauge(name, callbacks, description=metric.help)

    def _samples(self) -> Samples:
        with self._lock:
            now = time.monotonic()
            if self._taken is None or now - self._taken[0] > SNAPSHOT_TTL_S:
                self._taken = (now, self._read())
            return self._taken[1]

    def _observer(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            family = self._samples().values.get(name, {})
            return [Observation(value, dict(labels)) for labels, value in family.items()]

        return observe

    def conversion(self, labels: Labels, seconds: float) -> None:
        self._durations.record(seconds, dict(labels))

    def close(self) -> None:
        """Push what is there now, then stop."""
        self.provider.shutdown()

"""The service's Prometheus metrics, in a registry of its own (one per app)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from sparsebridge.encoder.coalesce import Coalescer, PassInfo

__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServiceMetrics:
    """Request latency and outcomes, queue depth, and the encoder's gathered passes.

    Metrics (prefix ``sparsebridge_``): ``request_duration_seconds{endpoint}`` (histogram),
    ``requests_total{endpoint,code}``, ``errors_total{endpoint,error_type}``, ``queue_depth``
    (requests admitted, waiting or being answered), ``queue_limit``, ``encode_queue_calls``
    (calls waiting for a pass), ``batch_texts`` and ``batch_calls`` (per pass, histograms),
    ``pass_duration_seconds`` (histogram), ``encode_failures_total`` (calls whose texts failed).
    """

    def __init__(
        self, *, queue_depth: Callable[[], int], queue_limit: int, coalescer: Coalescer[Any, str, Any] | None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "sparsebridge_request_duration_seconds",
            "Time from a request's arrival to its response, by endpoint",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "sparsebridge_requests",
            "Requests answered, by endpoint and status code",
            ["endpoint", "code"],
            registry=r,
        )
        self.errors = Counter(
            "sparsebridge_errors",
            "Requests answered with an error, by kind",
            ["endpoint", "error_type"],
            registry=r,
        )
        Gauge(
            "sparsebridge_queue_depth", "Requests admitted: waiting or being answered", registry=r
        ).set_function(lambda: float(queue_depth()))
        Gauge("sparsebridge_queue_limit", "Most requests admitted at once (then 503)", registry=r).set(
            queue_limit
        )
        self.batch_texts = Histogram(
            "sparsebridge_batch_texts",
            "Texts per forward pass of gathered calls",
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_calls = Histogram(
            "sparsebridge_batch_calls", "Calls answered per forward pass", buckets=_SIZE_BUCKETS, registry=r
        )
        self.pass_seconds = Histogram(
            "sparsebridge_pass_duration_seconds",
            "Time of one gathered pass (retries after a failure included)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.encode_failures = Counter(
            "sparsebridge_encode_failures", "Calls whose texts failed in the model", registry=r
        )
        waiting = Gauge(
            "sparsebridge_encode_queue_calls", "Encoder calls waiting for a forward pass", registry=r
        )
        if coalescer is not None:
            waiting.set_function(lambda: float(coalescer.queued))
            coalescer.add_listener(self.observe_pass)

    def observe_pass(self, info: PassInfo) -> None:
        self.batch_texts.observe(info.items)
        self.batch_calls.observe(info.calls)
        self.pass_seconds.observe(info.seconds)
        if info.failed_calls:
            self.encode_failures.inc(info.failed_calls)

    def observe_request(self, endpoint: str, code: int, seconds: float, error_type: str | None) -> None:
        self.latency.labels(endpoint).observe(seconds)
        self.requests.labels(endpoint, str(code)).inc()
        if error_type is not None:
            self.errors.labels(endpoint, error_type).inc()

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)

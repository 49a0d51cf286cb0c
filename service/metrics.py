"""Prometheus metrics, kept in a registry of the app's own (several apps can share a process).

Where the service runs as several worker processes (the image's ``WORKERS``), a scrape of
``/metrics`` reaches one of them; each worker then keeps its values in files of a directory
they share (prometheus-client's multiprocess mode, on when ``PROMETHEUS_MULTIPROC_DIR`` names
one, which the image's start command makes afresh), and every scrape adds up all of them.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = ["CONTENT_TYPE_LATEST", "MULTIPROCESS_DIR", "BatchMetrics", "ServiceMetrics"]

# prometheus-client's own variable: set, it keeps every value in that directory's files.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class ServiceMetrics:
    """Requests by route and status, latency, batch sizes, queue depth, inference time."""

    def __init__(self) -> None:
        # prometheus-client chose where its values live from this variable when it was
        # imported; read again here, it must not have changed since.
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_DIR))
        self.registry = CollectorRegistry()
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.requests = Counter(
            "bayes_http_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bayes_http_request_duration_seconds",
            "Time from request to response.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "bayes_batch_rows",
            "Rows (instances) per model pass.",
            ["model"],
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "bayes_batch_requests",
            "Requests per model pass.",
            ["model"],
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "bayes_queue_depth",
            "Requests waiting for a model pass.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livesum",  # the workers' queues together, the live ones'
        )
        self.inference = Histogram(
            "bayes_inference_seconds",
            "Time of one model pass over S posterior draws.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # Label look-ups take a lock and build tuples; the children are cached per key.
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def for_model(self, model: str) -> BatchMetrics:
        return BatchMetrics(self, model)

    def render(self) -> bytes:
        """The metrics as Prometheus reads them: this process's, or every worker's summed."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        workers = CollectorRegistry()
        MultiProcessCollector(workers)
        return generate_latest(workers)

    def close(self) -> None:
        """This process stops: its queues leave the workers' sum (its counts stay in it)."""
        if self.multiprocess:
            mark_process_dead(os.getpid())


class BatchMetrics:
    """The batcher's observer for one model."""

    def __init__(self, metrics: ServiceMetrics, model: str) -> None:
        self._rows = metrics.batch_rows.labels(model)
        self._requests = metrics.batch_requests.labels(model)
        self._inference = metrics.inference.labels(model)
        self._depth = metrics.queue_depth.labels(model)

    def on_batch(self, *, requests: int, rows: int, seconds: float) -> None:
        self._rows.observe(rows)
        self._requests.observe(requests)
        self._inference.observe(seconds)

    def on_queue_depth(self, depth: int) -> None:
        self._depth.set(depth)

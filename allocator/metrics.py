"""Prometheus metrics: per-RPC counts and latency, solve phases, the plan cache, Redis, fill per channel.

One registry per server (several servers in one process never share counters). Served as Prometheus text
at /metrics when ALLOCATOR_METRICS_LISTEN is set. docs/operations.md lists every metric.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from allocator.domain import Plan
from allocator.service.status import HandlerCache
from allocator.summary import PlanFigures

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_PHASE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 60, 120, 300)


class Metrics:
    """The service's metrics, and the observer and interceptor that feed them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rpc_requests = Counter(
            "allocator_rpc_requests",
            "RPCs handled, by method and status code",
            ["method", "code"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "allocator_rpc_duration_seconds",
            "RPC handling time",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.solve_phase_seconds = Histogram(
            "allocator_solve_phase_seconds",
            "Time of each phase of a solve that was not a cache hit (build, paid, free, store)",
            ["phase"],
            buckets=_PHASE_BUCKETS,
            registry=r,
        )
        self.plan_cache = Counter(
            "allocator_plan_cache",
            "Solve requests answered from the plan cache (hit) or solved (miss)",
            ["result"],
            registry=r,
        )
        self.redis_errors = Counter(
            "allocator_redis_errors",
            "Redis failures met by RPCs, by kind (unreachable, loading, refused)",
            ["kind"],
            registry=r,
        )
        self.redis_ping_seconds = Histogram(
            "allocator_redis_ping_seconds",
            "Round trip of the health monitor's Redis PING",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.degraded_answers = Counter(
            "allocator_degraded_answers",
            "PickMerchants answers served from the last known plan while Redis was unreachable",
            registry=r,
        )
        self.serving_degraded = Gauge(
            "allocator_serving_degraded",
            "1 while PickMerchants answers from memory (Redis unreachable)",
            registry=r,
        )
        self.serving_pending = Gauge(
            "allocator_serving_pending_impressions",
            "Impressions served from memory and not yet counted in Redis (flushed when it is back)",
            registry=r,
        )
        self.channel_fill = Gauge(
            "allocator_channel_fill_ratio",
            "(paid + free) / capacity per channel of the last solved plan",
            ["channel"],
            registry=r,
        )
        self.serving = Gauge("allocator_serving", "1 while health is SERVING, else 0", registry=r)

    # ---- SolveObserver ---------------------------------------------------------------------------

    def cache(self, hit: bool) -> None:
        self.plan_cache.labels("hit" if hit else "miss").inc()

    def solved(self, plan: Plan, figures: PlanFigures, seconds_by_phase: dict[str, float]) -> None:
        for phase, seconds in seconds_by_phase.items():
            self.solve_phase_seconds.labels(phase).observe(seconds)
        for c in figures.channels:
            self.channel_fill.labels(c.channel.name).set(c.fill_rate)

    def redis_error(self, kind: str) -> None:
        self.redis_errors.labels(kind).inc()

    # ---- the HTTP endpoint -----------------------------------------------------------------------

    def serve(self, listen: str) -> tuple[Any, int]:
        """Start /metrics on host:port (port 0: any free one); returns the HTTP server and its port."""
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)
        return server, int(server.server_port)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts every RPC by method and final status code, and times it."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._cache = HandlerCache()
        # the labelled counters, looked up once (labels() costs ~8 us a call: a lock and a dict)
        self._counted: dict[tuple[str, str], Any] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        return self._cache.get(handler, method, lambda h: self._wrap(method, h))

    def _wrap(self, method: str, handler: Any) -> grpc.RpcMethodHandler:
        timed = self.metrics.rpc_seconds.labels(method)  # the method's histogram, once per wrapper
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary(method, timed, handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._stream(method, timed, handler.unary_stream))
        return handler

    def _record(
        self, method: str, timed: Any, context: grpc.ServicerContext, start: float, failed: bool
    ) -> None:
        code = context.code() if hasattr(context, "code") else None
        name = code.name if isinstance(code, grpc.StatusCode) else ("UNKNOWN" if failed else "OK")
        counted = self._counted.get((method, name))
        if counted is None:
            counted = self._counted[(method, name)] = self.metrics.rpc_requests.labels(method, name)
        counted.inc()
        timed.observe(time.perf_counter() - start)

    def _unary(self, method: str, timed: Any, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            start, failed = time.perf_counter(), True
            try:
                result = behaviour(request, context)
                failed = False
                return result
            finally:
                self._record(method, timed, context, start, failed)

        return wrapped

    def _stream(
        self, method: str, timed: Any, behaviour: Callable[..., Iterator[Any]]
    ) -> Callable[..., Iterator[Any]]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            start, failed = time.perf_counter(), True
            try:
                yield from behaviour(request, context)
                failed = False
            finally:
                self._record(method, timed, context, start, failed)

        return wrapped

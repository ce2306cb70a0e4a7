"""Wiring: settings -> Redis (embedded or configured) -> stores -> servicer -> gRPC server.

Health (grpc.health.v1) is NOT_SERVING until Redis answers, follows Redis while running, and flips
to NOT_SERVING before a graceful stop; reflection is on. SIGTERM and SIGINT stop the server cleanly,
including the embedded redis-server it started.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import redis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from allocator import logs
from allocator.domain import SolveParams
from allocator.metrics import Metrics, MetricsInterceptor
from allocator.planner import Planner
from allocator.rules import load_rules
from allocator.service.servicer import AllocatorServicer
from allocator.service.validation import Limits
from allocator.settings import Settings
from allocator.store.embedded import EmbeddedRedis
from allocator.store.keys import Keys
from allocator.store.plans import PlanStore
from allocator.store.records import RecordStore
from trafficalloc.v1 import allocator_pb2, allocator_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = allocator_pb2.DESCRIPTOR.services_by_name["AllocatorService"].full_name


@dataclass
class App:
    """A running server and what it owns; `stop` undoes `start_app` in order."""

    settings: Settings
    server: grpc.Server
    port: int
    health: health.HealthServicer
    redis: redis.Redis
    embedded: EmbeddedRedis | None = None
    metrics: Metrics | None = None
    metrics_server: Any = None
    metrics_port: int | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _monitor: threading.Thread | None = None

    def serving(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)
        if self.metrics is not None:
            self.metrics.serving.set(1 if ok else 0)

    def watch_redis(self, interval_s: float = 1.0) -> None:
        """Follow Redis in health: SERVING while it answers PING, NOT_SERVING while it does not."""
        last: bool | None = None
        while not self._stopping.is_set():
            start = time.perf_counter()
            try:
                ok = bool(self.redis.ping())
            except redis.exceptions.RedisError:
                ok = False
            if ok and self.metrics is not None:
                self.metrics.redis_ping_seconds.observe(time.perf_counter() - start)
            if ok != last and not self._stopping.is_set():
                self.serving(ok)
                if last is not None:
                    logger.warning("redis %s", "is back" if ok else "is unreachable")
                last = ok
            self._stopping.wait(interval_s)

    def stop(self, grace_s: float | None = None) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.health.enter_graceful_shutdown()
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self.server.stop(grace).wait()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        self.redis.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        if self.embedded is not None:
            self.embedded.stop()
        logger.info("server stopped")

    def wait(self) -> None:
        self.server.wait_for_termination()


def start_app(settings: Settings) -> App:
    """Start Redis (if embedded), build the server on settings.listen, and begin serving."""
    rules = load_rules(settings.rules_file)
    embedded = None
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir, appendfsync=settings.redis_appendfsync).start()
        url = embedded.url
    client = redis.Redis.from_url(
        url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=10
    )
    keys = Keys(settings.key_prefix)
    records = RecordStore(client, keys, settings.request_ttl_s)
    plans = PlanStore(client, keys, records.writer, settings.plan_ttl_s)
    params = SolveParams(time_limit_s=settings.solve_time_limit_s)
    metrics = Metrics()
    planner = Planner(records, plans, rules, params, validate=settings.validate_plans, observers=[metrics])
    servicer = AllocatorServicer(records, planner, rules, keys, Limits())
    servicer.on_redis_error = metrics.redis_error

    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.workers),
        options=options,
        interceptors=[MetricsInterceptor(metrics)],
    )
    allocator_pb2_grpc.add_AllocatorServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        port = server.add_insecure_port(settings.listen)
    except RuntimeError as exc:
        if embedded:
            embedded.stop()
        raise SystemExit(f"cannot listen on {settings.listen}: {exc}") from exc
    app = App(
        settings=settings,
        server=server,
        port=port,
        health=health_servicer,
        redis=client,
        embedded=embedded,
        metrics=metrics,
    )
    if settings.metrics_listen:
        app.metrics_server, app.metrics_port = metrics.serve(settings.metrics_listen)
    app.serving(False)
    server.start()
    app._monitor = threading.Thread(target=app.watch_redis, name="redis-health", daemon=True)
    app._monitor.start()
    logger.info(
        "listening",
        extra={
            "listen": settings.listen,
            "port": port,
            "redis": "embedded" if embedded else url,
            "metrics_port": app.metrics_port,
        },
    )
    return app


def main(argv: list[str] | None = None) -> int:
    settings = Settings.load(argv)
    logs.configure(settings.log_level, settings.log_format)
    app = start_app(settings)
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logger.info("signal %s: shutting down", signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.port_file is not None:
        _wait_serving(app)
        tmp = settings.port_file.with_suffix(".tmp")
        tmp.write_text(str(app.port))
        tmp.replace(settings.port_file)
    done.wait()
    app.stop()
    if settings.port_file is not None:
        settings.port_file.unlink(missing_ok=True)  # "ready" no longer holds
    return 0


def _wait_serving(app: App, timeout_s: float = 30.0) -> None:
    """Block until the health monitor has seen Redis answer (the port file means "ready")."""
    channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        for reply in stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=timeout_s):
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
    finally:
        channel.close()


if __name__ == "__main__":
    sys.exit(main())

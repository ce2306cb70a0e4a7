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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import redis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from allocator import access, logs, memory
from allocator.domain import SolveParams
from allocator.metrics import Metrics, MetricsInterceptor
from allocator.optimise.paid_warm import prepare_or_log
from allocator.optimise.worker import SolverProcess
from allocator.planner import Planner
from allocator.rules import load_rules
from allocator.service.rpc_pool import RpcPool
from allocator.service.servicer import AllocatorServicer
from allocator.service.status import DecodeErrorInterceptor
from allocator.service.validation import Limits
from allocator.serving.engine import ServingConfig, ServingEngine
from allocator.serving.replanner import Replanner
from allocator.settings import Settings
from allocator.store.connect import RedisClient, connect, ping
from allocator.store.embedded import EmbeddedRedis
from allocator.store.keys import Keys
from allocator.store.plans import PlanStore
from allocator.store.records import RecordStore
from allocator.store.serving import ServingStore
from trafficalloc.v1 import allocator_pb2, allocator_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = allocator_pb2.DESCRIPTOR.services_by_name["AllocatorService"].full_name
# Health of the hot path alone: SERVING while Redis answers, and while PickMerchants may still answer
# from memory (degraded) after Redis went away; NOT_SERVING after that bound.
SERVING_HEALTH_NAME = f"{SERVICE_NAME}/PickMerchants"
COUNTER_TTL_S = 3 * 24 * 3600  # serving counters outlive their date by this much after the last write


@dataclass
class App:
    """A running server and what it owns; `stop` undoes `start_app` in order."""

    settings: Settings
    server: grpc.Server
    port: int
    health: health.HealthServicer
    redis: RedisClient
    embedded: EmbeddedRedis | None = None
    metrics: Metrics | None = None
    metrics_server: Any = None
    metrics_port: int | None = None
    engine: ServingEngine | None = None
    solver_process: SolverProcess | None = None
    pool: RpcPool | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _monitor: threading.Thread | None = None
    ready: threading.Event = field(default_factory=threading.Event)  # set at the first SERVING

    def serving(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)
        if self.metrics is not None:
            self.metrics.serving.set(1 if ok else 0)
        if ok:
            self.ready.set()

    def watch_redis(self, interval_s: float = 1.0) -> None:
        """Follow Redis in health: SERVING while it answers PING, NOT_SERVING while it does not."""
        last: bool | None = None
        while not self._stopping.is_set():
            start = time.perf_counter()
            try:
                ok = ping(self.redis)  # a cluster: every primary
            except redis.exceptions.AuthenticationError as exc:  # the message never holds the password
                ok = False
                if last is None or last:
                    logger.error("redis refused the credentials of the configured URL: %s", exc)
            except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException):
                ok = False
            if ok and self.metrics is not None:
                self.metrics.redis_ping_seconds.observe(time.perf_counter() - start)
            if ok != last and not self._stopping.is_set():
                self.serving(ok)
                if last is not None:
                    logger.warning("redis %s", "is back" if ok else "is unreachable")
                last = ok
            if ok and self.engine is not None and self.engine.pending():
                self.engine.reconcile()  # count what was served from memory, exactly once
            memory.trim_if_due()  # a dropped plan's memory goes back to the system, off the request threads
            self._serving_health(ok)
            self._stopping.wait(interval_s)

    def _serving_health(self, redis_ok: bool) -> None:
        engine = self.engine
        if engine is None or self._stopping.is_set():
            return
        ok = redis_ok or engine.degraded_for() <= engine.config.degraded_max_s
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set(SERVING_HEALTH_NAME, status)
        if self.metrics is not None:
            self.metrics.serving_degraded.set(0 if redis_ok else 1)
            self.metrics.serving_pending.set(engine.pending())

    def stop(self, grace_s: float | None = None) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.health.enter_graceful_shutdown()
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self.server.stop(grace).wait()
        if self.pool is not None:
            self.pool.shutdown(wait=False)
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        if self.solver_process is not None:
            self.solver_process.close()
        self.redis.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        if self.embedded is not None:
            self.embedded.stop()
        logger.info("server stopped")

    def wait(self) -> None:
        self.server.wait_for_termination()


def start_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> App:
    """Start Redis (if embedded), build the server on settings.listen, and begin serving.

    clock: the service's "now" (seconds since the epoch) for picks without a time and for Replan's hours;
    tests pin it to a day they simulate, since Replan refuses dates and hours already over.
    """
    memory.fix_mmap_threshold()  # plans swapped in and out must not fragment the heap (allocator.memory)
    rules = load_rules(settings.rules_file)
    try:  # before anything starts: a bad access, TLS or Redis TLS setting stops the start with a message
        policy = (
            access.AccessPolicy.load(
                settings.access_file,
                open_health=settings.auth_open_health,
                open_reflection=settings.auth_open_health,
            )
            if settings.access_file is not None
            else None
        )
        credentials = access.server_credentials(
            settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
        )
        redis_url = settings.redis_url and access.redis_url_with_tls(
            settings.redis_url, settings.redis_ca_file, settings.redis_cert_file, settings.redis_key_file
        )
    except access.AccessConfigError as exc:
        raise SystemExit(str(exc)) from None
    embedded = None
    url = redis_url
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir, appendfsync=settings.redis_appendfsync).start()
        url = embedded.url
    client = connect(url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=10)
    keys = Keys(settings.key_prefix)
    records = RecordStore(client, keys, settings.request_ttl_s)
    plans = PlanStore(client, keys, records.writer, settings.plan_ttl_s)
    params = SolveParams(time_limit_s=settings.solve_time_limit_s)
    metrics = Metrics()
    planner = Planner(
        records,
        plans,
        rules,
        params,
        validate=settings.validate_plans,
        observers=[metrics],
        view_cache_size=2,  # decoded plans: the active one and its predecessor (a re-plan a minute)
    )
    solver_process = SolverProcess() if settings.solve_process else None
    if solver_process is not None:
        planner.solver = solver_process.solve
        solver_process.warm()  # the child starts while the server does: the first Solve does not wait for it
    else:  # solves run here: load the network simplex's machine code now, not in the first warm re-solve
        threading.Thread(target=prepare_or_log, name="simplex-warm-up", daemon=True).start()
    servicer = AllocatorServicer(records, planner, rules, keys, Limits())
    servicer.on_redis_error = metrics.redis_error
    serving_store = ServingStore(
        client, keys, request_ttl_s=settings.serving_request_ttl_s, counter_ttl_s=COUNTER_TTL_S
    )
    engine = ServingEngine(
        serving_store,
        planner,
        ServingConfig(
            timezone=settings.timezone,
            plan_refresh_s=settings.serving_plan_refresh_s,
            degraded_max_s=settings.serving_degraded_max_s,
            degraded_share=settings.serving_degraded_share,
        ),
        on_degraded=metrics.degraded_answers.inc,
        clock=clock,
    )
    servicer.engine, servicer.serving_store = engine, serving_store
    servicer.replanner = Replanner(planner, serving_store, engine, keys, validate=settings.validate_plans)

    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    pool = RpcPool(settings.workers)
    server = grpc.server(
        pool,  # grpcio uses only submit() and the future's add_done_callback()
        options=options,
        # metrics outermost (it sees every final status, the access check's refusals included), then
        # access, then undecodable requests
        interceptors=[
            MetricsInterceptor(metrics),
            *([access.AccessInterceptor(policy)] if policy else []),
            DecodeErrorInterceptor(),
        ],
    )
    allocator_pb2_grpc.add_AllocatorServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        if credentials is None:
            port = server.add_insecure_port(settings.listen)
        else:
            port = server.add_secure_port(settings.listen, credentials)
    except RuntimeError as exc:
        if solver_process is not None:
            solver_process.close()
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
        engine=engine,
        solver_process=solver_process,
        pool=pool,
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
            "redis": "embedded" if embedded else access.mask_url(url),
            "tls": "mutual" if settings.tls_client_ca_file else "on" if credentials else "off",
            "auth": "on" if policy else "off",
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
    """Block until the health monitor has seen Redis answer (the port file means "ready").

    Reads the health state in process, not over a channel: that works with TLS, mutual TLS and tokens.
    """
    if not app.ready.wait(timeout_s):
        app.stop(0)
        raise SystemExit(f"not serving after {timeout_s:g}s: Redis did not answer (see the log above)")


if __name__ == "__main__":
    sys.exit(main())

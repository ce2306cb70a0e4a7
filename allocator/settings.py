"""One frozen settings object, read from the environment and command-line flags (flags win).

This is the only module that reads environment variables; only the server's main builds clients.
"""

from __future__ import annotations

import argparse
import os
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:50051"
    redis_url: str | None = None  # None: start a private redis-server (embedded)
    data_dir: pathlib.Path = pathlib.Path("var/data")
    rules_file: pathlib.Path | None = None  # None: the shipped default_rules.json
    key_prefix: str = "alloc"
    log_level: str = "INFO"
    log_format: str = "json"  # json | text
    workers: int = 16
    shutdown_grace_s: float = 10.0
    request_ttl_s: int = 7 * 24 * 3600  # how long a request id is remembered for retries
    plan_ttl_s: int = 30 * 24 * 3600  # how long a solved plan stays cached
    solve_time_limit_s: float = 60.0
    solve_process: bool = True  # solve in a child process, so serving never waits on the solver's GIL
    validate_plans: bool = False  # run the solver-independent validator after every solve
    redis_appendfsync: str = "everysec"  # embedded Redis only: always | everysec | no
    max_message_bytes: int = 64 * 1024 * 1024
    port_file: pathlib.Path | None = None  # write the bound port here once serving (port 0 in tests)
    metrics_listen: str | None = None  # host:port of Prometheus /metrics; None: no metrics endpoint
    timezone: str = "UTC"  # the time zone of plan dates and hour windows (PickMerchants, Replan)
    serving_degraded_max_s: float = 300.0  # PickMerchants answers from memory this long without Redis
    serving_degraded_share: float = 0.5  # share of a line's remaining plan one replica shows degraded
    serving_plan_refresh_s: float = 1.0  # a replica picks up a newly activated plan within this time
    serving_request_ttl_s: int = 600  # how long a pick's or delivery report's request id is remembered
    # Access (allocator/access.py, docs/operations.md "Access and TLS")
    tls_cert_file: pathlib.Path | None = None  # PEM certificate chain; with tls_key_file: serve TLS only
    tls_key_file: pathlib.Path | None = None
    tls_client_ca_file: pathlib.Path | None = None  # set: mutual TLS, clients need a cert signed by it
    access_file: pathlib.Path | None = None  # bearer tokens and their roles; None: no authentication
    auth_open_health: bool = True  # with an access file: health and reflection answer without a token
    redis_ca_file: pathlib.Path | None = None  # rediss:// only: CA that signed Redis's certificate
    redis_cert_file: pathlib.Path | None = None  # rediss:// only: client certificate for Redis mutual TLS
    redis_key_file: pathlib.Path | None = None

    @classmethod
    def load(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        p = argparse.ArgumentParser(
            prog="python -m allocator.server", description="The traffic allocation server"
        )
        p.add_argument("--listen", default=env.get("ALLOCATOR_LISTEN", cls.listen))
        p.add_argument("--redis-url", default=env.get("ALLOCATOR_REDIS_URL") or None)
        p.add_argument(
            "--data-dir", type=pathlib.Path, default=pathlib.Path(env.get("ALLOCATOR_DATA_DIR", "var/data"))
        )
        p.add_argument("--rules", type=pathlib.Path, default=_path(env.get("ALLOCATOR_RULES_FILE")))
        p.add_argument("--key-prefix", default=env.get("ALLOCATOR_KEY_PREFIX", cls.key_prefix))
        p.add_argument("--log-level", default=env.get("ALLOCATOR_LOG_LEVEL", cls.log_level))
        p.add_argument(
            "--log-format", choices=["json", "text"], default=env.get("ALLOCATOR_LOG_FORMAT", "json")
        )
        p.add_argument("--workers", type=int, default=int(env.get("ALLOCATOR_WORKERS", cls.workers)))
        p.add_argument(
            "--solve-time-limit",
            type=float,
            default=float(env.get("ALLOCATOR_SOLVE_TIME_LIMIT", cls.solve_time_limit_s)),
        )
        p.add_argument(
            "--validate-plans",
            action="store_true",
            default=env.get("ALLOCATOR_VALIDATE_PLANS", "").lower() in ("1", "true", "yes"),
        )
        p.add_argument(
            "--redis-appendfsync",
            choices=["always", "everysec", "no"],
            default=env.get("ALLOCATOR_REDIS_APPENDFSYNC", cls.redis_appendfsync),
        )
        p.add_argument("--port-file", type=pathlib.Path, default=None)
        p.add_argument("--metrics-listen", default=env.get("ALLOCATOR_METRICS_LISTEN") or None)
        p.add_argument("--tls-cert", type=pathlib.Path, default=_path(env.get("ALLOCATOR_TLS_CERT_FILE")))
        p.add_argument("--tls-key", type=pathlib.Path, default=_path(env.get("ALLOCATOR_TLS_KEY_FILE")))
        p.add_argument(
            "--tls-client-ca", type=pathlib.Path, default=_path(env.get("ALLOCATOR_TLS_CLIENT_CA_FILE"))
        )
        p.add_argument("--access-file", type=pathlib.Path, default=_path(env.get("ALLOCATOR_ACCESS_FILE")))
        p.add_argument(
            "--auth-open-health",
            action=argparse.BooleanOptionalAction,
            default=env.get("ALLOCATOR_AUTH_OPEN_HEALTH", "true").lower() not in ("0", "false", "no"),
        )
        p.add_argument("--redis-ca", type=pathlib.Path, default=_path(env.get("ALLOCATOR_REDIS_CA_FILE")))
        p.add_argument("--redis-cert", type=pathlib.Path, default=_path(env.get("ALLOCATOR_REDIS_CERT_FILE")))
        p.add_argument("--redis-key", type=pathlib.Path, default=_path(env.get("ALLOCATOR_REDIS_KEY_FILE")))
        a = p.parse_args(argv)
        return cls(
            listen=a.listen,
            redis_url=a.redis_url,
            data_dir=a.data_dir,
            rules_file=a.rules,
            key_prefix=a.key_prefix,
            log_level=a.log_level.upper(),
            log_format=a.log_format,
            workers=a.workers,
            solve_time_limit_s=a.solve_time_limit,
            validate_plans=a.validate_plans,
            solve_process=env.get("ALLOCATOR_SOLVE_PROCESS", "1").lower() not in ("0", "false", "no"),
            redis_appendfsync=a.redis_appendfsync,
            port_file=a.port_file,
            metrics_listen=a.metrics_listen,
            tls_cert_file=a.tls_cert,
            tls_key_file=a.tls_key,
            tls_client_ca_file=a.tls_client_ca,
            access_file=a.access_file,
            auth_open_health=a.auth_open_health,
            redis_ca_file=a.redis_ca,
            redis_cert_file=a.redis_cert,
            redis_key_file=a.redis_key,
            request_ttl_s=int(env.get("ALLOCATOR_REQUEST_TTL_SECONDS", cls.request_ttl_s)),
            plan_ttl_s=int(env.get("ALLOCATOR_PLAN_TTL_SECONDS", cls.plan_ttl_s)),
            shutdown_grace_s=float(env.get("ALLOCATOR_SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_s)),
            timezone=env.get("ALLOCATOR_TIMEZONE", cls.timezone),
            serving_degraded_max_s=float(
                env.get("ALLOCATOR_SERVING_DEGRADED_MAX_SECONDS", cls.serving_degraded_max_s)
            ),
            serving_degraded_share=float(
                env.get("ALLOCATOR_SERVING_DEGRADED_SHARE", cls.serving_degraded_share)
            ),
            serving_plan_refresh_s=float(
                env.get("ALLOCATOR_SERVING_PLAN_REFRESH_SECONDS", cls.serving_plan_refresh_s)
            ),
            serving_request_ttl_s=int(
                env.get("ALLOCATOR_SERVING_REQUEST_TTL_SECONDS", cls.serving_request_ttl_s)
            ),
        )


def _path(value: str | None) -> pathlib.Path | None:
    return pathlib.Path(value) if value else None

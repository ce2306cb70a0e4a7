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
    validate_plans: bool = False  # run the solver-independent validator after every solve
    redis_appendfsync: str = "everysec"  # embedded Redis only: always | everysec | no
    max_message_bytes: int = 64 * 1024 * 1024
    port_file: pathlib.Path | None = None  # write the bound port here once serving (port 0 in tests)
    metrics_listen: str | None = None  # host:port of Prometheus /metrics; None: no metrics endpoint

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
            redis_appendfsync=a.redis_appendfsync,
            port_file=a.port_file,
            metrics_listen=a.metrics_listen,
            request_ttl_s=int(env.get("ALLOCATOR_REQUEST_TTL_SECONDS", cls.request_ttl_s)),
            plan_ttl_s=int(env.get("ALLOCATOR_PLAN_TTL_SECONDS", cls.plan_ttl_s)),
            shutdown_grace_s=float(env.get("ALLOCATOR_SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_s)),
        )


def _path(value: str | None) -> pathlib.Path | None:
    return pathlib.Path(value) if value else None

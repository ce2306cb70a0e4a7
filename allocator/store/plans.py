"""Solved plans in Redis: content-addressed blobs, the active plan of each date, the solve lock."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import cast

import redis

from allocator.store.connect import RedisClient
from allocator.store.idempotent import CommitResult, IdempotentWriter, Op
from allocator.store.keys import Keys

logger = logging.getLogger(__name__)

_RELEASE_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_EXTEND_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Take over a lock that still holds a token this process could not release (see `unlock`).
_TAKEOVER_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return false
"""


class PlanStore:
    def __init__(
        self, client: RedisClient, keys: Keys, writer: IdempotentWriter, plan_ttl_seconds: int
    ) -> None:
        self._r = client
        self._k = keys
        self._writer = writer
        self._ttl = plan_ttl_seconds
        self._release = client.register_script(_RELEASE_LUA)
        self._extend = client.register_script(_EXTEND_LUA)
        self._takeover = client.register_script(_TAKEOVER_LUA)
        # plan id -> token of a lock this process took but could not release (Redis was unreachable
        # when its solve ended). Its solve is over, so the next solve of that plan here may take it
        # over instead of waiting up to a whole lease for it to lapse.
        self._stale: dict[str, str] = {}

    def save(self, plan_id: str, summary: bytes, data: bytes) -> None:
        """Data first, then the summary: a summary's presence means the plan is complete."""
        pipe = self._r.pipeline(transaction=True)
        pipe.set(self._k.plan_data(plan_id), data, ex=self._ttl)
        pipe.set(self._k.plan_summary(plan_id), summary, ex=self._ttl)
        pipe.execute()

    def summary(self, plan_id: str) -> bytes | None:
        return cast(bytes | None, self._r.get(self._k.plan_summary(plan_id)))

    def data(self, plan_id: str) -> bytes | None:
        return cast(bytes | None, self._r.get(self._k.plan_data(plan_id)))

    def stored(self, plan_id: str) -> bool:
        """Whether the plan's data is still there (not expired), without fetching it."""
        return bool(self._r.exists(self._k.plan_data(plan_id)))

    def touch(self, plan_id: str) -> None:
        """Restart a plan's expiry (an activated plan lives another full TTL)."""
        pipe = self._r.pipeline(transaction=True)
        pipe.expire(self._k.plan_data(plan_id), self._ttl)
        pipe.expire(self._k.plan_summary(plan_id), self._ttl)
        pipe.execute()

    # ---- active plans ------------------------------------------------------------------------

    def active(self, dates: list[str]) -> list[str]:
        """The active plan id of each date ("" where none)."""
        if not dates:
            return []
        raws = self._r.hmget(self._k.active_plans(), dates)
        return [cast(bytes, raw).decode() if raw is not None else "" for raw in raws]

    def set_active(self, plan_id: str, dates: list[str]) -> None:
        """Point every date at the plan in one HSET (Solve's own activation; no request id to keep)."""
        self._r.hset(self._k.active_plans(), mapping=dict.fromkeys(dates, plan_id))

    def activate(
        self, request_id: str, digest: str, plan_id: str, dates: list[str], response: bytes
    ) -> CommitResult:
        """Point every date at the plan in one script: readers see all dates switch at once."""
        ops = [Op("HSET", self._k.active_plans(), d, plan_id) for d in dates]
        return self._writer.commit(self._k.activation_request(request_id), digest, response, ops)

    # ---- the solve lock (one solve of the same inputs across replicas) -----------------------

    def try_lock(self, plan_id: str, ttl_ms: int) -> str | None:
        token = uuid.uuid4().hex
        key = self._k.plan_lock(plan_id)
        if self._r.set(key, token, nx=True, px=ttl_ms):
            return token
        stale = self._stale.get(plan_id)
        if stale is not None and self._takeover(keys=[key], args=[stale, token, ttl_ms]):
            self._stale.pop(plan_id, None)
            return token
        return None

    def unlock(self, plan_id: str, token: str) -> None:
        try:
            self._release(keys=[self._k.plan_lock(plan_id)], args=[token])
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException):
            self._stale[plan_id] = token  # the lock may have survived in Redis (AOF): ours to take over
            raise
        self._stale.pop(plan_id, None)

    @contextlib.contextmanager
    def lease(self, plan_id: str, token: str, ttl_ms: int) -> Iterator[None]:
        """Keep the lock alive while the body runs (a solve may outlast any fixed TTL).

        A replica that dies mid-solve stops renewing, so its lock expires within ttl_ms and another
        replica takes over.
        """
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl_ms / 3000):
                try:
                    self._extend(keys=[self._k.plan_lock(plan_id)], args=[token, ttl_ms])
                except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
                    # the solve goes on; the lock may lapse
                    logger.warning("could not renew the solve lock of %s: %s", plan_id, exc)

        thread = threading.Thread(target=renew, name=f"lease-{plan_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def locked(self, plan_id: str) -> bool:
        return bool(self._r.exists(self._k.plan_lock(plan_id)))

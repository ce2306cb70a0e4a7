"""Solved plans in Redis: content-addressed blobs, the active plan of each date, the solve lock."""

from __future__ import annotations

import uuid
from typing import cast

import redis

from allocator.store.idempotent import CommitResult, IdempotentWriter, Op
from allocator.store.keys import Keys

_RELEASE_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class PlanStore:
    def __init__(
        self, client: redis.Redis, keys: Keys, writer: IdempotentWriter, plan_ttl_seconds: int
    ) -> None:
        self._r = client
        self._k = keys
        self._writer = writer
        self._ttl = plan_ttl_seconds
        self._release = client.register_script(_RELEASE_LUA)

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

    def activate(
        self, request_id: str, digest: str, plan_id: str, dates: list[str], response: bytes
    ) -> CommitResult:
        """Point every date at the plan in one script: readers see all dates switch at once."""
        ops = [Op("HSET", self._k.active_plans(), d, plan_id) for d in dates]
        return self._writer.commit(self._k.activation_request(request_id), digest, response, ops)

    # ---- the solve lock (one solve of the same inputs across replicas) -----------------------

    def try_lock(self, plan_id: str, ttl_ms: int) -> str | None:
        token = uuid.uuid4().hex
        return token if self._r.set(self._k.plan_lock(plan_id), token, nx=True, px=ttl_ms) else None

    def unlock(self, plan_id: str, token: str) -> None:
        self._release(keys=[self._k.plan_lock(plan_id)], args=[token])

    def locked(self, plan_id: str) -> bool:
        return bool(self._r.exists(self._k.plan_lock(plan_id)))

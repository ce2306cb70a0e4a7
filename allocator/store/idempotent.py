"""Idempotent writes: a request id and the writes it makes commit together in one Lua script.

The request key holds the request's digest and the first response. A retry with the same digest gets
that response back (replayed); the same request id with other content is a conflict; otherwise the
writes are applied and the request key is set, atomically. All keys of one commit share a hash tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from allocator.store.connect import RedisClient

DIGEST_LEN = 64  # hex sha256

_COMMIT_LUA = """
local prev = redis.call('GET', KEYS[1])
if prev then return prev end
local i = 4
while i <= #ARGV do
  local op, k, a, b = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  if op == 'HSET' then redis.call('HSET', k, a, b)
  elseif op == 'HDEL' then redis.call('HDEL', k, a)
  elseif op == 'ZADD' then redis.call('ZADD', k, 0, a)
  elseif op == 'ZREM' then redis.call('ZREM', k, a)
  elseif op == 'SET' then redis.call('SET', k, a)
  elseif op == 'INCR' then redis.call('INCR', k)
  else return redis.error_reply('unknown op ' .. op) end
  i = i + 4
end
redis.call('SET', KEYS[1], ARGV[1] .. ARGV[2], 'EX', tonumber(ARGV[3]))
return false
"""


class RequestConflict(Exception):
    """The request id was used before with different content."""


@dataclass(frozen=True)
class Op:
    """One write of a commit: HSET key field value, HDEL key field, ZADD key member, ZREM, SET key value,
    INCR key (a table's generation)."""

    name: str
    key: str
    a: bytes | str = b""
    b: bytes | str = b""


@dataclass(frozen=True)
class CommitResult:
    response: bytes
    replayed: bool


class IdempotentWriter:
    def __init__(self, client: RedisClient, ttl_seconds: int) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._script = client.register_script(_COMMIT_LUA)

    def previous(self, request_key: str, digest: str) -> CommitResult | None:
        """The stored answer of an earlier identical request, before doing any work; None if new."""
        raw = self._client.get(request_key)
        return None if raw is None else self._check(cast(bytes, raw), digest)

    def commit(self, request_key: str, digest: str, response: bytes, ops: Sequence[Op]) -> CommitResult:
        keys = [request_key]
        argv: list[bytes | str | int] = [digest, response, self._ttl]
        for op in ops:
            if op.key not in keys:
                keys.append(op.key)
            argv += [op.name, keys.index(op.key) + 1, op.a, op.b]
        raw = self._script(keys=keys, args=argv)
        if raw is None:
            return CommitResult(response=response, replayed=False)
        return self._check(raw, digest)

    @staticmethod
    def _check(raw: bytes, digest: str) -> CommitResult:
        return CommitResult(response=stored_answer(raw, digest), replayed=True)


def stored_answer(raw: bytes, digest: str) -> bytes:
    """The answer stored after a request's content digest; RequestConflict when the digest differs."""
    if raw[:DIGEST_LEN].decode() != digest:
        raise RequestConflict("request_id was already used with different content")
    return raw[DIGEST_LEN:]

"""Acknowledged inputs in Redis: inventory per date, redemptions, daily-promotion eligibility.

Records are stored as the API's protobuf messages (compact, versioned with the API). Every write goes
through IdempotentWriter, so a write and its request id commit atomically.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from allocator.store.connect import RedisClient
from allocator.store.idempotent import CommitResult, IdempotentWriter, Op
from allocator.store.keys import Keys
from trafficalloc.v1 import allocator_pb2 as pb


class RecordStore:
    """Inputs of the optimiser, behind typed methods."""

    def __init__(self, client: RedisClient, keys: Keys, request_ttl_seconds: int) -> None:
        self._r = client
        self._k = keys
        self._writer = IdempotentWriter(client, request_ttl_seconds)

    @property
    def writer(self) -> IdempotentWriter:
        return self._writer

    # ---- inventory ---------------------------------------------------------------------------

    def publish_inventory(
        self, date: str, request_id: str, digest: str, nodes: pb.GetInventoryResponse, response: bytes
    ) -> CommitResult:
        ops = [Op("SET", self._k.inventory(date), nodes.SerializeToString())]
        return self._writer.commit(self._k.inventory_request(date, request_id), digest, response, ops)

    def inventory_bytes(self, date: str) -> bytes | None:
        return cast(bytes | None, self._r.get(self._k.inventory(date)))

    def inventory(self, date: str) -> pb.GetInventoryResponse | None:
        raw = self.inventory_bytes(date)
        return None if raw is None else pb.GetInventoryResponse.FromString(raw)

    # ---- redemptions -------------------------------------------------------------------------

    def record_redemption(
        self, request_id: str, digest: str, redemption: pb.Redemption, response: bytes
    ) -> CommitResult:
        rid = redemption.redemption_id
        ops = [
            Op("HSET", self._k.redemptions(), rid, redemption.SerializeToString()),
            Op("ZADD", self._k.redemption_ids(), rid),
            Op("ZADD", self._k.redemptions_by_merchant(), f"{redemption.merchant_id}\x00{rid}"),
            Op("INCR", self._k.redemptions_generation()),
        ]
        return self._writer.commit(self._k.redemption_request(request_id), digest, response, ops)

    def update_redemption(
        self, request_id: str, digest: str, redemption: pb.Redemption, response: bytes, changed: bool = True
    ) -> CommitResult:
        """Store the redemption (when `changed`) and the request's answer in one script. An unchanged
        redemption writes only the answer: the generation, and with it every cached plan's fingerprint,
        stays as it is."""
        ops = [
            Op("HSET", self._k.redemptions(), redemption.redemption_id, redemption.SerializeToString()),
            Op("INCR", self._k.redemptions_generation()),
        ]
        return self._writer.commit(
            self._k.redemption_request(request_id), digest, response, ops if changed else []
        )

    def redemption(self, redemption_id: str) -> pb.Redemption | None:
        raw = cast(bytes | None, self._r.hget(self._k.redemptions(), redemption_id))
        return None if raw is None else pb.Redemption.FromString(raw)

    def redemption_page(
        self, after: str, limit: int, merchant_id: str = ""
    ) -> tuple[list[pb.Redemption], str]:
        """Up to `limit` redemptions ordered by id after the cursor; returns them and the next cursor."""
        if merchant_id:
            lo = f"({merchant_id}\x00{after}" if after else f"[{merchant_id}\x00"
            members = self._r.zrangebylex(
                self._k.redemptions_by_merchant(), lo, f"[{merchant_id}\x00\xff", start=0, num=limit + 1
            )
            ids = [cast(bytes, m).decode().split("\x00", 1)[1] for m in members]
        else:
            lo = f"({after}" if after else "-"
            found = self._r.zrangebylex(self._k.redemption_ids(), lo, "+", 0, limit + 1)
            ids = [cast(bytes, m).decode() for m in found]
        more = len(ids) > limit
        ids = ids[:limit]
        raws = self._r.hmget(self._k.redemptions(), ids) if ids else []
        items = [pb.Redemption.FromString(cast(bytes, raw)) for raw in raws if raw is not None]
        return items, (ids[-1] if more and ids else "")

    def generations(self) -> tuple[int, int]:
        """(redemptions, eligibility) generations: they change whenever a record of the table does."""
        red = self._r.get(self._k.redemptions_generation())
        elig = self._r.get(self._k.eligibility_generation())
        return int(cast(bytes, red) or 0), int(cast(bytes, elig) or 0)

    def redemptions_snapshot(self) -> tuple[int, dict[bytes, bytes]]:
        """Every redemption record with the generation they belong to, read atomically."""
        return self._snapshot(self._k.redemptions_generation(), self._k.redemptions())

    def eligibility_snapshot(self) -> tuple[int, dict[bytes, bytes]]:
        return self._snapshot(self._k.eligibility_generation(), self._k.eligibility())

    def _snapshot(self, gen_key: str, data_key: str) -> tuple[int, dict[bytes, bytes]]:
        pipe = self._r.pipeline(transaction=True)  # MULTI: both keys share a hash tag
        pipe.get(gen_key)
        pipe.hgetall(data_key)
        gen, data = pipe.execute()
        return int(gen or 0), cast(dict[bytes, bytes], data)

    # ---- eligibility -------------------------------------------------------------------------

    def set_eligibility(
        self, request_id: str, digest: str, entries: Iterable[pb.DailyPromotionEligibility], response: bytes
    ) -> CommitResult:
        ops: list[Op] = []
        for e in entries:
            ops.append(Op("HSET", self._k.eligibility(), e.merchant_id, e.SerializeToString()))
            ops.append(Op("ZADD", self._k.eligibility_ids(), e.merchant_id))
        ops.append(Op("INCR", self._k.eligibility_generation()))
        return self._writer.commit(self._k.eligibility_request(request_id), digest, response, ops)

    def clear_eligibility(
        self, request_id: str, digest: str, merchant_ids: Iterable[str], response: bytes
    ) -> CommitResult:
        ops: list[Op] = []
        for m in merchant_ids:
            ops.append(Op("HDEL", self._k.eligibility(), m))
            ops.append(Op("ZREM", self._k.eligibility_ids(), m))
        ops.append(Op("INCR", self._k.eligibility_generation()))
        return self._writer.commit(self._k.eligibility_request(request_id), digest, response, ops)

    def eligible_count(self, merchant_ids: list[str]) -> int:
        if not merchant_ids:
            return 0
        return sum(1 for v in self._r.hmget(self._k.eligibility(), merchant_ids) if v is not None)

    def eligibility_page(self, after: str, limit: int) -> tuple[list[pb.DailyPromotionEligibility], str]:
        lo = f"({after}" if after else "-"
        found = self._r.zrangebylex(self._k.eligibility_ids(), lo, "+", 0, limit + 1)
        ids = [cast(bytes, m).decode() for m in found]
        more = len(ids) > limit
        ids = ids[:limit]
        raws = self._r.hmget(self._k.eligibility(), ids) if ids else []
        items = [pb.DailyPromotionEligibility.FromString(cast(bytes, raw)) for raw in raws if raw is not None]
        return items, (ids[-1] if more and ids else "")

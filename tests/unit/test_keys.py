"""The Redis key layout, byte for byte (docs/operations.md documents the same list)."""

from __future__ import annotations

import binascii

from allocator.store.keys import Keys


def test_key_layout_is_pinned() -> None:
    k = Keys("alloc")
    assert k.inventory("2026-12-01") == "alloc:v1:{inv:2026-12-01}:nodes"
    assert k.inventory_request("2026-12-01", "rq") == "alloc:v1:{inv:2026-12-01}:req:rq"
    assert k.redemptions() == "alloc:v1:{red}:data"
    assert k.redemption_ids() == "alloc:v1:{red}:ids"
    assert k.redemptions_by_merchant() == "alloc:v1:{red}:by-merchant"
    assert k.redemption_request("rq") == "alloc:v1:{red}:req:rq"
    assert k.redemptions_generation() == "alloc:v1:{red}:gen"
    assert k.eligibility_generation() == "alloc:v1:{elig}:gen"
    assert k.eligibility() == "alloc:v1:{elig}:data"
    assert k.eligibility_ids() == "alloc:v1:{elig}:ids"
    assert k.eligibility_request("rq") == "alloc:v1:{elig}:req:rq"
    assert k.plan_summary("p1") == "alloc:v1:{plan:p1}:summary"
    assert k.plan_data("p1") == "alloc:v1:{plan:p1}:data"
    assert k.plan_lock("p1") == "alloc:v1:{plan:p1}:lock"
    assert k.active_plans() == "alloc:v1:{active}:dates"
    assert k.activation_request("rq") == "alloc:v1:{active}:req:rq"
    assert k.serving_node("2026-12-01", 1, 20, "r00") == "alloc:v1:{srv:2026-12-01}:node:1:20:r00"
    assert k.serving_node_prefix("2026-12-01") == "alloc:v1:{srv:2026-12-01}:node:"
    assert k.serving_budget("2026-12-01") == "alloc:v1:{srv:2026-12-01}:budget"
    assert k.serving_pick_request("2026-12-01", "rq") == "alloc:v1:{srv:2026-12-01}:req:pick:rq"
    assert k.serving_report_request("2026-12-01", "rq") == "alloc:v1:{srv:2026-12-01}:req:report:rq"
    assert k.serving_flush("2026-12-01", "f1") == "alloc:v1:{srv:2026-12-01}:flush:f1"
    assert Keys("other").redemptions() == "other:v1:{red}:data"


def _slot(key: str) -> int:
    """Redis Cluster's hash slot: CRC16 of the hash tag (or the key) mod 16384."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key.encode(), 0) % 16384


def test_keys_written_together_share_a_cluster_slot() -> None:
    k = Keys("alloc")
    groups = [
        [k.inventory("2026-12-01"), k.inventory_request("2026-12-01", "x")],
        [
            k.redemptions(),
            k.redemption_ids(),
            k.redemptions_by_merchant(),
            k.redemption_request("x"),
            k.redemptions_generation(),
        ],
        [k.eligibility(), k.eligibility_ids(), k.eligibility_request("x"), k.eligibility_generation()],
        [k.plan_summary("p"), k.plan_data("p"), k.plan_lock("p")],
        [k.active_plans(), k.activation_request("x")],
    ]
    for group in groups:
        assert len({_slot(key) for key in group}) == 1, group

"""Pure key builders: every Redis key the service touches, prefixed and versioned.

Keys that one atomic write changes together share a hash tag ({...}) so the layout is safe under Redis
Cluster. docs/operations.md lists the layout; tests/unit/test_keys.py pins it byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = "v1"


@dataclass(frozen=True)
class Keys:
    """Key builders under one prefix (e.g. "alloc" gives "alloc:v1:...")."""

    prefix: str = "alloc"

    @property
    def base(self) -> str:
        return f"{self.prefix}:{SCHEMA_VERSION}"

    # Inventory: one blob per date, replaced atomically; request ids scoped to the date.
    def inventory(self, date: str) -> str:
        return f"{self.base}:{{inv:{date}}}:nodes"

    def inventory_request(self, date: str, request_id: str) -> str:
        return f"{self.base}:{{inv:{date}}}:req:{request_id}"

    # Redemptions: records, id index, merchant index and request ids change together.
    def redemptions(self) -> str:
        return f"{self.base}:{{red}}:data"

    def redemption_ids(self) -> str:
        return f"{self.base}:{{red}}:ids"

    def redemptions_by_merchant(self) -> str:
        return f"{self.base}:{{red}}:by-merchant"

    def redemptions_generation(self) -> str:
        """Bumped by every redemption write: the plan fingerprint reads it instead of every record."""
        return f"{self.base}:{{red}}:gen"

    def redemption_request(self, request_id: str) -> str:
        return f"{self.base}:{{red}}:req:{request_id}"

    # Daily-promotion eligibility.
    def eligibility(self) -> str:
        return f"{self.base}:{{elig}}:data"

    def eligibility_ids(self) -> str:
        return f"{self.base}:{{elig}}:ids"

    def eligibility_generation(self) -> str:
        return f"{self.base}:{{elig}}:gen"

    def eligibility_request(self, request_id: str) -> str:
        return f"{self.base}:{{elig}}:req:{request_id}"

    # Plans: content-addressed by the fingerprint of their inputs.
    def plan_summary(self, plan_id: str) -> str:
        return f"{self.base}:{{plan:{plan_id}}}:summary"

    def plan_data(self, plan_id: str) -> str:
        return f"{self.base}:{{plan:{plan_id}}}:data"

    def plan_lock(self, plan_id: str) -> str:
        return f"{self.base}:{{plan:{plan_id}}}:lock"

    # Active plan of each date: one hash, so switching several dates is one atomic HSET.
    def active_plans(self) -> str:
        return f"{self.base}:{{active}}:dates"

    def activation_request(self, request_id: str) -> str:
        return f"{self.base}:{{active}}:req:{request_id}"

    # Serving counters of one date: every key a pick, a delivery report or a re-plan's snapshot touches
    # shares the date's tag, so one script changes them atomically (one slot under Redis Cluster).
    def serving_node(self, date: str, channel: int, hour: int, region: str) -> str:
        """Impressions delivered on one supply node, a field per line ("p:<redemption>", "f:<merchant>")
        plus "_n", the node's total."""
        return f"{self.serving_node_prefix(date)}{channel}:{hour}:{region}"

    def serving_node_prefix(self, date: str) -> str:
        """What every serving_node key of the date starts with (followed by channel:hour:region)."""
        return f"{self.base}:{{srv:{date}}}:node:"

    def serving_budget(self, date: str) -> str:
        """Delivered per line over the whole date: millipoints of paid lines, impressions of free ones."""
        return f"{self.base}:{{srv:{date}}}:budget"

    def serving_pick_request(self, date: str, request_id: str) -> str:
        """The stored answer of a pick (request ids scoped to the date and to PickMerchants: a delivery
        report may use the same id without meeting it)."""
        return f"{self.base}:{{srv:{date}}}:req:pick:{request_id}"

    def serving_report_request(self, date: str, request_id: str) -> str:
        """The content digest and stored answer of a delivery report (scoped to the date and to
        ReportDelivery)."""
        return f"{self.base}:{{srv:{date}}}:req:report:{request_id}"

    def serving_flush(self, date: str, flush_id: str) -> str:
        """Marks a flush of counts taken while Redis was unreachable as applied (exactly once)."""
        return f"{self.base}:{{srv:{date}}}:flush:{flush_id}"

    def replan_request(self, request_id: str) -> str:
        return f"{self.base}:{{active}}:replan:{request_id}"

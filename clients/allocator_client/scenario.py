"""Scenario files: one day's inventory, redemptions and eligibility as JSON, and applying them.

The format is ``{"name": ..., "date": "YYYY-MM-DD", "inventory": [SupplyNode], "redemptions":
[RecordRedemptionRequest], "eligibility": [DailyPromotionEligibility]}``, each message in the proto's
JSON mapping (proto field names, enum names as strings), so files are readable, diffable and checked
by the same parser as the API. Applying a scenario is idempotent: every write carries a request id
derived from the scenario name, so applying it twice records nothing twice.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from allocator_client.client import AllocatorClient
from allocator_client.daygen import DEFAULT_REGIONS, generate_day
from trafficalloc.v1 import allocator_pb2 as pb

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_REGIONS",
    "ELIGIBILITY_BATCH",
    "Progress",
    "Scenario",
    "apply_scenario",
    "dump_scenario",
    "generate_day",
    "load_scenario",
]

ELIGIBILITY_BATCH = 5000
_KEYS = {"name", "date", "inventory", "redemptions", "eligibility"}

# progress(phase, done, total): phase is "inventory", "redemptions" or "eligibility".
Progress = Callable[[str, int, int], None]
M = TypeVar("M", bound=Message)


@dataclass
class Scenario:
    """One day of inputs; ``name`` seeds the request ids that make applying it idempotent."""

    name: str
    date: str
    inventory: list[pb.SupplyNode] = field(default_factory=list)
    redemptions: list[pb.RecordRedemptionRequest] = field(default_factory=list)
    eligibility: list[pb.DailyPromotionEligibility] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The scenario in its JSON shape."""
        return {
            "name": self.name,
            "date": self.date,
            "inventory": [_to_dict(m) for m in self.inventory],
            "redemptions": [_to_dict(m) for m in self.redemptions],
            "eligibility": [_to_dict(m) for m in self.eligibility],
        }

    @classmethod
    def from_dict(cls, data: Any, *, default_name: str = "scenario") -> Scenario:
        """Parse the JSON shape; raises ``ValueError`` naming the first bad entry."""
        if not isinstance(data, dict):
            raise ValueError("a scenario is a JSON object")
        unknown = set(data) - _KEYS
        if unknown:
            raise ValueError(f"unknown scenario keys: {', '.join(sorted(unknown))}")
        if not isinstance(data.get("date"), str) or not data["date"]:
            raise ValueError("scenario needs a 'date' (YYYY-MM-DD)")
        return cls(
            name=str(data.get("name") or default_name),
            date=data["date"],
            inventory=_parse_list(data, "inventory", pb.SupplyNode),
            redemptions=_parse_list(data, "redemptions", pb.RecordRedemptionRequest),
            eligibility=_parse_list(data, "eligibility", pb.DailyPromotionEligibility),
        )


def _to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _parse_list(data: dict[str, Any], key: str, message_type: type[M]) -> list[M]:
    items = data.get(key, [])
    if not isinstance(items, list):
        raise ValueError(f"'{key}' must be a list")
    parsed: list[M] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):  # ParseDict would raise a TypeError, not a ParseError
            raise ValueError(f"{key}[{index}]: expected a JSON object")
        try:
            parsed.append(json_format.ParseDict(item, message_type()))
        except json_format.ParseError as error:
            raise ValueError(f"{key}[{index}]: {error}") from None
    return parsed


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file; the name defaults to the file's stem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON: {error}") from None
    try:
        return Scenario.from_dict(data, default_name=path.stem)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def dump_scenario(scenario: Scenario, path: str | Path) -> None:
    """Write a scenario file: a JSON object with one message per line, readable and diffable."""
    data = scenario.to_dict()
    lines = ["{", f'"name": {json.dumps(data["name"])},', f'"date": {json.dumps(data["date"])},']
    keys = ("inventory", "redemptions", "eligibility")
    for position, key in enumerate(keys):
        items = [json.dumps(item, separators=(",", ":")) for item in data[key]]
        body = ",\n".join(items)
        tail = "" if position == len(keys) - 1 else ","
        lines.append(f'"{key}": [\n{body}\n]{tail}' if items else f'"{key}": []{tail}')
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def apply_scenario(
    client: AllocatorClient,
    scenario: Scenario,
    progress: Progress | None = None,
    *,
    workers: int = 8,
    timeout: float | None = None,
) -> dict[str, int]:
    """Publish the inventory, record the redemptions (concurrently), set eligibility in batches.

    Request ids are ``{name}-inventory``, ``{name}-r-{i}`` (unless the file gives one) and
    ``{name}-e-{batch}``, so a second apply returns the first answers (``replayed``) instead of
    duplicating anything. Stops at the first error, which is raised as ``AllocatorError``.
    """
    report = progress or (lambda phase, done, total: None)
    counts = {"inventory_nodes": 0, "redemptions": 0, "redemptions_replayed": 0, "eligibility": 0}
    counts["eligibility_replayed"] = 0

    if scenario.inventory:
        report("inventory", 0, 1)
        published = client.publish_inventory(
            pb.PublishInventoryRequest(
                request_id=f"{scenario.name}-inventory", date=scenario.date, nodes=scenario.inventory
            ),
            timeout=timeout,
        )
        counts["inventory_nodes"] = published.node_count
        report("inventory", 1, 1)

    total = len(scenario.redemptions)
    done = 0
    lock = threading.Lock()

    def record(index: int) -> bool:
        nonlocal done
        request = pb.RecordRedemptionRequest()
        request.CopyFrom(scenario.redemptions[index])
        request.request_id = request.request_id or f"{scenario.name}-r-{index}"
        replayed = client.record_redemption(request, timeout=timeout).replayed
        with lock:
            done += 1
            report("redemptions", done, total)
        return replayed

    report("redemptions", 0, total)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="apply") as pool:
        futures = [pool.submit(record, index) for index in range(total)]
        try:
            for future in futures:
                counts["redemptions_replayed"] += future.result()
                counts["redemptions"] += 1
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    entries = scenario.eligibility
    report("eligibility", 0, len(entries))
    for batch, start in enumerate(range(0, len(entries), ELIGIBILITY_BATCH)):
        chunk = entries[start : start + ELIGIBILITY_BATCH]
        response = client.set_eligibility(
            pb.SetEligibilityRequest(request_id=f"{scenario.name}-e-{batch}", entries=chunk), timeout=timeout
        )
        counts["eligibility"] += response.updated
        counts["eligibility_replayed"] += len(chunk) if response.replayed else 0
        report("eligibility", start + len(chunk), len(entries))
    logger.info("applied scenario %s: %s", scenario.name, counts)
    return counts

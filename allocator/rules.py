"""Program rules from a JSON file: which program may use which channel, default prices, reserved shares.

The shipped defaults live in default_rules.json beside this module; ALLOCATOR_RULES_FILE (read by the
settings) points at another file. Rules are part of every plan's fingerprint.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

from allocator.domain import Channel, Program, Rules

DEFAULT_RULES_PATH = pathlib.Path(__file__).with_name("default_rules.json")


class RulesError(ValueError):
    """The rules file is malformed; the message names the offending entry."""


def load_rules(path: pathlib.Path | None = None) -> Rules:
    """Read and check a rules file (the shipped defaults when path is None)."""
    source = path or DEFAULT_RULES_PATH
    try:
        raw = json.loads(source.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RulesError(f"cannot read rules file {source}: {exc}") from exc
    return parse_rules(raw)


def parse_rules(raw: dict[str, Any]) -> Rules:
    """Build Rules from the decoded JSON, rejecting unknown names and out-of-range numbers."""
    try:
        programs = {
            _enum(Program, name): frozenset(_enum(Channel, c) for c in channels)
            for name, channels in raw["programs"].items()
        }
        prices: dict[Channel, int] = {}
        shares: dict[Channel, float] = {}
        for name, cfg in raw["channels"].items():
            channel = _enum(Channel, name)
            price = int(cfg["default_price_points_per_mille"])
            share = float(cfg["daily_promotion_share"])
            if price <= 0:
                raise RulesError(f"channels.{name}.default_price_points_per_mille must be > 0")
            if not (math.isfinite(share) and 0.0 <= share <= 1.0):
                raise RulesError(f"channels.{name}.daily_promotion_share must be within 0..1")
            prices[channel], shares[channel] = price, share
        quota = int(raw["daily_promotion_quota_per_weight"])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, RulesError):
            raise
        raise RulesError(f"malformed rules: {exc!r}") from exc
    missing = [c.name for c in Channel if c not in prices]
    if missing:
        raise RulesError(f"channels missing from rules: {', '.join(missing)}")
    if quota < 0:
        raise RulesError("daily_promotion_quota_per_weight must be >= 0")
    return Rules(
        program_channels=programs, default_price=prices, free_share=shares, free_quota_per_weight=quota
    )


def rules_to_json(rules: Rules) -> str:
    """Canonical JSON of the rules (sorted), used in plan fingerprints."""
    return json.dumps(
        {
            "programs": {p.name: sorted(c.name for c in cs) for p, cs in rules.program_channels.items()},
            "channels": {
                c.name: {
                    "default_price_points_per_mille": rules.default_price[c],
                    "daily_promotion_share": rules.free_share.get(c, 0.0),
                }
                for c in Channel
            },
            "daily_promotion_quota_per_weight": rules.free_quota_per_weight,
        },
        sort_keys=True,
    )


def _enum(kind: type[Program] | type[Channel], name: str) -> Any:
    try:
        return kind[name]
    except KeyError:
        raise RulesError(f"unknown {kind.__name__.lower()} {name!r}") from None

"""A benchmark instance from a scenario file: the day the CLI loads (`allocatorctl load FILE`), as a Problem.

The file is checked by the server's own request validation (the same field violations a PublishInventory,
RecordRedemption or SetEligibility call would get) and turned into the Problem the service would solve
for the scenario's date: records converted by allocator.convert, the shipped rules, build_problem. The
writes mean what `apply_scenario` makes of them: a repeated request id is a retry (refused if its content
differs), a merchant's later eligibility batch replaces its earlier entry. Demands come in the file's
order, where the service orders records by their random ids, so a tie between optima may fall otherwise.
"""

from __future__ import annotations

from pathlib import Path

from allocator.convert import inputs_from_records, stored_redemption
from allocator.domain import Problem, ProblemInputs, Rules, SolveParams
from allocator.errors import InvalidArgument
from allocator.problem import build_problem
from allocator.rules import load_rules
from allocator.service.validation import Limits, check_eligibility, check_inventory, check_redemption
from allocator_client.scenario import ELIGIBILITY_BATCH, Scenario, load_scenario
from trafficalloc.v1 import allocator_pb2 as pb


class InstanceError(ValueError):
    """The scenario file cannot be read, or an entry in it would be refused by the service."""


def _refused(what: str, exc: InvalidArgument) -> InstanceError:
    shown = "; ".join(f"{path}: {why}" for path, why in exc.violations[:5])
    more = f" (and {len(exc.violations) - 5} more)" if len(exc.violations) > 5 else ""
    return InstanceError(f"{what}: {shown}{more}")


def scenario_inputs(scenario: Scenario, rules: Rules, limits: Limits | None = None) -> ProblemInputs:
    """The ProblemInputs of the scenario's date, after the checks the service makes on each write."""
    limits = limits or Limits()
    publish = pb.PublishInventoryRequest(request_id="bench", date=scenario.date, nodes=scenario.inventory)
    try:
        date = check_inventory(publish, limits)
    except InvalidArgument as exc:
        raise _refused("inventory", exc) from None
    redemptions: list[pb.Redemption] = []
    seen: dict[str, bytes] = {}  # request id -> content: a repeat is a replay, or refused if it differs
    for i, req in enumerate(scenario.redemptions):
        checked = pb.RecordRedemptionRequest()
        checked.CopyFrom(req)
        checked.request_id = req.request_id or f"{scenario.name}-r-{i}"  # as apply_scenario names it
        try:
            check_redemption(checked, rules, limits)
        except InvalidArgument as exc:
            raise _refused(f"redemptions[{i}]", exc) from None
        content = checked.SerializeToString(deterministic=True)
        if checked.request_id in seen:
            if seen[checked.request_id] != content:
                raise InstanceError(
                    f"redemptions[{i}]: request_id {checked.request_id!r} was used with other content"
                )
            continue  # the service answers a retry with the first record and records nothing new
        seen[checked.request_id] = content
        redemptions.append(stored_redemption(checked, f"rdm-{i:08d}"))
    for start in range(0, len(scenario.eligibility), ELIGIBILITY_BATCH):
        batch = pb.SetEligibilityRequest(
            request_id="bench", entries=scenario.eligibility[start : start + ELIGIBILITY_BATCH]
        )
        try:
            check_eligibility(batch, limits)
        except InvalidArgument as exc:
            raise _refused(f"eligibility (entries from {start})", exc) from None
    # a later batch replaces a merchant's earlier entry, as SetEligibility does (within a batch: refused)
    latest = {e.merchant_id: e for e in scenario.eligibility}
    inventory = pb.GetInventoryResponse(date=scenario.date, nodes=scenario.inventory)
    return inputs_from_records((date,), [inventory], redemptions, latest.values(), rules)


def load_instance(path: str | Path, params: SolveParams) -> tuple[Problem, ProblemInputs]:
    """The Problem of a scenario file's date and its inputs (InstanceError: unreadable or refused file)."""
    try:
        scenario = load_scenario(path)
    except (OSError, ValueError) as exc:
        raise InstanceError(str(exc)) from None
    inputs = scenario_inputs(scenario, load_rules())
    return build_problem(inputs, params), inputs

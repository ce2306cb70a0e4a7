"""Idempotent writes: retries replay the first answer, conflicting reuse is rejected, races count once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from allocator_client import AllocatorClient, AllocatorError
from tests.integration.conftest import RunningServer
from tests.integration.helpers import eligibility, inventory, redemption
from trafficalloc.v1 import allocator_pb2 as pb


def test_retry_returns_the_first_answer(client: AllocatorClient) -> None:
    first = client.record_redemption(redemption("same", "m-1", 500))
    again = client.record_redemption(redemption("same", "m-1", 500))
    assert not first.replayed and again.replayed
    assert again.redemption == first.redemption
    assert len(client.list_redemptions(pb.ListRedemptionsRequest()).redemptions) == 1


def test_same_request_id_with_other_content_is_rejected(client: AllocatorClient) -> None:
    client.record_redemption(redemption("same", "m-1", 500))
    with pytest.raises(AllocatorError) as err:
        client.record_redemption(redemption("same", "m-1", 501))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in err.value.field_violations] == ["request_id"]
    assert [r.points for r in client.list_redemptions(pb.ListRedemptionsRequest()).redemptions] == [500]


def test_concurrent_retries_of_one_request_id_record_once(server: RunningServer) -> None:
    def call(_: int) -> pb.RecordRedemptionResponse:
        with AllocatorClient(server.target, timeout=30) as c:
            return c.record_redemption(redemption("race", "m-race", 777))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, range(48)))
    ids = {a.redemption.redemption_id for a in answers}
    assert len(ids) == 1
    assert sum(not a.replayed for a in answers) == 1
    with AllocatorClient(server.target) as c:
        listed = c.list_redemptions(pb.ListRedemptionsRequest(merchant_id="m-race")).redemptions
    assert [r.redemption_id for r in listed] == list(ids)


def test_other_writes_replay_too(client: AllocatorClient) -> None:
    assert not client.publish_inventory(inventory()).replayed
    assert client.publish_inventory(inventory()).replayed
    assert not client.set_eligibility(eligibility("e", "f-1")).replayed
    assert client.set_eligibility(eligibility("e", "f-1")).replayed
    rec = client.record_redemption(redemption("r", "m", 10)).redemption
    cancel = pb.CancelRedemptionRequest(request_id="c", redemption_id=rec.redemption_id)
    assert client.cancel_redemption(cancel).redemption.status == pb.REDEMPTION_STATUS_CANCELLED
    assert client.cancel_redemption(cancel).redemption.status == pb.REDEMPTION_STATUS_CANCELLED
    with pytest.raises(AllocatorError) as err:
        client.set_eligibility(eligibility("e", "f-2"))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT

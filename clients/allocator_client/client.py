"""A small typed facade over the generated AllocatorService stub.

One snake_case method per RPC, a deadline on every call, ``AllocatorError`` instead of raw
``grpc.RpcError``, idempotency keys filled in when the caller leaves them empty, and helpers that
walk paginated lists.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from allocator_client.errors import AllocatorError
from allocator_client.paging import iter_pages
from trafficalloc.v1 import allocator_pb2 as pb
from trafficalloc.v1 import allocator_pb2_grpc

logger = logging.getLogger(__name__)

__all__ = ["MAX_MESSAGE_BYTES", "SERVICE_NAME", "AllocatorClient", "iter_pages"]

SERVICE_NAME = "trafficalloc.v1.AllocatorService"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# Every write carries a request id, so retrying UNAVAILABLE (server restarting, connection lost)
# is safe for all methods; gRPC resends the same serialized request, hence the same id.
# Documented in docs/operations.md ("Retry policy"); tests/faults checks it against real processes.
_SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [{"service": SERVICE_NAME}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
]


class _RequestWithId(Protocol):
    request_id: str

    def CopyFrom(self, other: Any, /) -> None: ...


_IdT = TypeVar("_IdT", bound=_RequestWithId)


def _with_request_id(request: _IdT) -> _IdT:
    """Return the request, or a copy with a fresh idempotency key when the caller left it empty."""
    if request.request_id:
        return request
    filled = type(request)()
    filled.CopyFrom(request)
    filled.request_id = uuid.uuid4().hex
    return filled


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call (TLS or not; the token is never logged)."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _add(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        fields = (details.method, details.timeout, metadata, details.credentials, details.wait_for_ready)
        compression = getattr(details, "compression", None)
        return continuation(_CallDetails(*fields, compression), request)

    intercept_unary_unary = intercept_unary_stream = _add
    intercept_stream_unary = intercept_stream_stream = _add


NO_DEADLINE = 1e9  # seconds: from here up, no deadline (gRPC fails calls with ~1e10 s or inf at once)


def _deadline(timeout: float) -> float | None:
    """A call's timeout as gRPC takes it: None (no deadline) for inf and anything from NO_DEADLINE up."""
    if not timeout > 0:  # also NaN
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return None if timeout >= NO_DEADLINE else float(timeout)


class AllocatorClient:
    """Synchronous, thread-safe client of the allocation service.

    ``timeout`` (seconds) is the default deadline of every call; each method takes ``timeout=`` to
    override it. ``float("inf")`` (or anything from ``NO_DEADLINE`` seconds up) waits without a deadline;
    zero, negative and NaN timeouts raise ValueError. Pass ``channel`` to reuse one you own (it is then
    not closed by ``close()``).
    ``token`` is sent as ``authorization: Bearer <token>`` on every call. TLS is used when ``tls`` is true
    or any of ``root_certificates`` (PEM bytes of the CA; None: the system's), ``client_certificate`` and
    ``client_key`` (PEM bytes, for mutual TLS) is given.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        channel: grpc.Channel | None = None,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
    ) -> None:
        self.target = target
        self.timeout: float | None = _deadline(timeout)  # None: no deadline
        self._owns_channel = channel is None
        if channel is None:
            if tls or root_certificates or client_certificate or client_key:
                credentials = grpc.ssl_channel_credentials(root_certificates, client_key, client_certificate)
                channel = grpc.secure_channel(target, credentials, CHANNEL_OPTIONS)
            else:
                channel = grpc.insecure_channel(target, CHANNEL_OPTIONS)
        self._channel = grpc.intercept_channel(channel, _BearerToken(token)) if token else channel
        self._stub = allocator_pb2_grpc.AllocatorServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel if this client created it."""
        if self._owns_channel:
            self._channel.close()

    def _call(self, rpc: Any, request: Any, timeout: float | None) -> Any:
        try:
            return rpc(request, timeout=self.timeout if timeout is None else _deadline(timeout))
        except grpc.RpcError as error:
            raise AllocatorError.from_rpc_error(error) from None

    # -- health ------------------------------------------------------------------------------

    def wait_until_serving(self, timeout: float = 30.0, *, service: str = "") -> None:
        """Block until grpc.health.v1 reports SERVING; raise ``AllocatorError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AllocatorError(
                    grpc.StatusCode.DEADLINE_EXCEEDED, f"{self.target} not serving after {timeout}s ({last})"
                )
            try:
                reply = self._health.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=min(remaining, 2.0)
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as error:
                last = str(AllocatorError.from_rpc_error(error))
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))

    # -- inventory ---------------------------------------------------------------------------

    def publish_inventory(
        self, request: pb.PublishInventoryRequest, *, timeout: float | None = None
    ) -> pb.PublishInventoryResponse:
        """Replace the supply of a date (idempotent by request id)."""
        return self._call(self._stub.PublishInventory, _with_request_id(request), timeout)

    def get_inventory(
        self, request: pb.GetInventoryRequest, *, timeout: float | None = None
    ) -> pb.GetInventoryResponse:
        """Read one page of a date's supply."""
        return self._call(self._stub.GetInventory, request, timeout)

    def iter_inventory(self, date: str, *, page_size: int = 1000) -> Iterator[pb.SupplyNode]:
        """Every supply node of a date."""
        request = pb.GetInventoryRequest(date=date, page_size=page_size)
        return iter_pages(self.get_inventory, request, lambda r: r.nodes)

    # -- redemptions -------------------------------------------------------------------------

    def record_redemption(
        self, request: pb.RecordRedemptionRequest, *, timeout: float | None = None
    ) -> pb.RecordRedemptionResponse:
        """Record a redemption; retries with the same request id return the first answer."""
        return self._call(self._stub.RecordRedemption, _with_request_id(request), timeout)

    def cancel_redemption(
        self, request: pb.CancelRedemptionRequest | str, *, timeout: float | None = None
    ) -> pb.CancelRedemptionResponse:
        """Cancel a redemption, given the request or just the redemption id."""
        if isinstance(request, str):
            request = pb.CancelRedemptionRequest(redemption_id=request)
        return self._call(self._stub.CancelRedemption, _with_request_id(request), timeout)

    def get_redemption(
        self, request: pb.GetRedemptionRequest | str, *, timeout: float | None = None
    ) -> pb.GetRedemptionResponse:
        """Read one redemption, given the request or just its id."""
        if isinstance(request, str):
            request = pb.GetRedemptionRequest(redemption_id=request)
        return self._call(self._stub.GetRedemption, request, timeout)

    def list_redemptions(
        self, request: pb.ListRedemptionsRequest | None = None, *, timeout: float | None = None
    ) -> pb.ListRedemptionsResponse:
        """Read one page of redemptions."""
        return self._call(self._stub.ListRedemptions, request or pb.ListRedemptionsRequest(), timeout)

    def iter_redemptions(
        self,
        *,
        merchant_id: str = "",
        status: pb.RedemptionStatus.ValueType = pb.REDEMPTION_STATUS_UNSPECIFIED,
        page_size: int = 1000,
    ) -> Iterator[pb.Redemption]:
        """Every redemption matching the filters."""
        request = pb.ListRedemptionsRequest(merchant_id=merchant_id, status=status, page_size=page_size)
        return iter_pages(self.list_redemptions, request, lambda r: r.redemptions)

    # -- daily-promotion eligibility -----------------------------------------------------------

    def set_eligibility(
        self, request: pb.SetEligibilityRequest, *, timeout: float | None = None
    ) -> pb.SetEligibilityResponse:
        """Mark a batch of merchants eligible (at most 10,000 entries a call)."""
        return self._call(self._stub.SetEligibility, _with_request_id(request), timeout)

    def clear_eligibility(
        self, request: pb.ClearEligibilityRequest, *, timeout: float | None = None
    ) -> pb.ClearEligibilityResponse:
        """Remove a batch of merchants' eligibility."""
        return self._call(self._stub.ClearEligibility, _with_request_id(request), timeout)

    def list_eligibility(
        self, request: pb.ListEligibilityRequest | None = None, *, timeout: float | None = None
    ) -> pb.ListEligibilityResponse:
        """Read one page of eligible merchants."""
        return self._call(self._stub.ListEligibility, request or pb.ListEligibilityRequest(), timeout)

    def iter_eligibility(self, *, page_size: int = 1000) -> Iterator[pb.DailyPromotionEligibility]:
        """Every eligible merchant."""
        request = pb.ListEligibilityRequest(page_size=page_size)
        return iter_pages(self.list_eligibility, request, lambda r: r.entries)

    # -- plans ---------------------------------------------------------------------------------

    def solve(self, request: pb.SolveRequest, *, timeout: float | None = None) -> pb.SolveResponse:
        """Solve a date or range (cached by input fingerprint). Give large days a longer ``timeout``."""
        return self._call(self._stub.Solve, request, timeout)

    def solve_stream(
        self, request: pb.SolveStreamRequest, *, timeout: float | None = None
    ) -> Iterator[pb.SolveProgress]:
        """Solve with progress: yields each phase as it starts; the last event (DONE) carries the plan."""
        try:
            for message in self._stub.SolveStream(
                request, timeout=self.timeout if timeout is None else _deadline(timeout)
            ):
                yield message.progress
        except grpc.RpcError as error:
            raise AllocatorError.from_rpc_error(error) from None

    def explain_allocation(
        self, request: pb.ExplainAllocationRequest, *, timeout: float | None = None
    ) -> pb.ExplainAllocationResponse:
        """Why a merchant got what it got on a date: reasons, saturated nodes, shadow prices."""
        return self._call(self._stub.ExplainAllocation, request, timeout)

    def check_availability(
        self, request: pb.CheckAvailabilityRequest, *, timeout: float | None = None
    ) -> pb.CheckAvailabilityResponse:
        """Most points a hypothetical redemption could take now without under-delivering anyone."""
        return self._call(self._stub.CheckAvailability, request, timeout)

    def get_plan_report(
        self, request: pb.GetPlanReportRequest, *, timeout: float | None = None
    ) -> pb.GetPlanReportResponse:
        """Summary, per-node fill and shadow prices, and free shares of a plan (the active one of a date)."""
        return self._call(self._stub.GetPlanReport, request, timeout)

    def get_plan(
        self, request: pb.GetPlanRequest | str, *, timeout: float | None = None
    ) -> pb.GetPlanResponse:
        """Read a plan's summary, given the request or just the plan id."""
        if isinstance(request, str):
            request = pb.GetPlanRequest(plan_id=request)
        return self._call(self._stub.GetPlan, request, timeout)

    def get_active_plan(
        self, request: pb.GetActivePlanRequest | str, *, timeout: float | None = None
    ) -> pb.GetActivePlanResponse:
        """Read the active plan of a date, given the request or just the date."""
        if isinstance(request, str):
            request = pb.GetActivePlanRequest(date=request)
        return self._call(self._stub.GetActivePlan, request, timeout)

    def activate_plan(
        self, request: pb.ActivatePlanRequest | str, *, timeout: float | None = None
    ) -> pb.ActivatePlanResponse:
        """Make a plan active for every date it covers, given the request or just the plan id."""
        if isinstance(request, str):
            request = pb.ActivatePlanRequest(plan_id=request)
        return self._call(self._stub.ActivatePlan, _with_request_id(request), timeout)

    # -- allocations -------------------------------------------------------------------------

    def get_merchant_allocation(
        self, request: pb.GetMerchantAllocationRequest, *, timeout: float | None = None
    ) -> pb.GetMerchantAllocationResponse:
        """What a merchant gets on a date, paid and free."""
        return self._call(self._stub.GetMerchantAllocation, request, timeout)

    def get_node_allocation(
        self, request: pb.GetNodeAllocationRequest, *, timeout: float | None = None
    ) -> pb.GetNodeAllocationResponse:
        """One page of who gets a supply node."""
        return self._call(self._stub.GetNodeAllocation, request, timeout)

    def iter_node_allocation(self, request: pb.GetNodeAllocationRequest) -> Iterator[pb.NodeAllocationEntry]:
        """Every entry of a supply node, largest first."""
        return iter_pages(self.get_node_allocation, request, lambda r: r.entries)

    # -- rules ---------------------------------------------------------------------------------

    def get_rules(
        self, request: pb.GetRulesRequest | None = None, *, timeout: float | None = None
    ) -> pb.GetRulesResponse:
        """The configured program rules, channel prices and reserved shares."""
        return self._call(self._stub.GetRules, request or pb.GetRulesRequest(), timeout)

    # -- serving -------------------------------------------------------------------------------

    def pick_merchants(
        self, request: pb.PickMerchantsRequest, *, timeout: float | None = None
    ) -> pb.PickMerchantsResponse:
        """Merchants to show now. Fills an empty request id and an unset time (now), so a retry of this
        call asks about the same hour window and counts once."""
        filled = _with_request_id(request)
        if not filled.HasField("time"):
            if filled is request:
                filled = pb.PickMerchantsRequest()
                filled.CopyFrom(request)
            filled.time.GetCurrentTime()
        return self._call(self._stub.PickMerchants, filled, timeout)

    def report_delivery(
        self, request: pb.ReportDeliveryRequest, *, timeout: float | None = None
    ) -> pb.ReportDeliveryResponse:
        """Count impressions a front service delivered itself (idempotent by request id)."""
        return self._call(self._stub.ReportDelivery, _with_request_id(request), timeout)

    def replan(self, request: pb.ReplanRequest, *, timeout: float | None = None) -> pb.ReplanResponse:
        """Re-solve the rest of a day from the delivered counts and swap the new plan in."""
        return self._call(self._stub.Replan, _with_request_id(request), timeout)

    def get_delivery(
        self, request: pb.GetDeliveryRequest, *, timeout: float | None = None
    ) -> pb.GetDeliveryResponse:
        """A merchant's delivered impressions and points on a date against the active plan."""
        return self._call(self._stub.GetDelivery, request, timeout)

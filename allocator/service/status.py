"""The error boundary: domain errors and Redis failures become gRPC statuses with rich details.

Every servicer method is wrapped by `rpc_boundary`, so bad input never surfaces as INTERNAL and a
Redis outage answers UNAVAILABLE with a clear message.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import redis
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from allocator.errors import InvalidArgument, NotFound, ServiceError
from allocator.store.idempotent import RequestConflict
from allocator.validate import PlanInvalid

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def to_status(error: ServiceError) -> grpc.Status:
    details: list[any_pb2.Any] = []
    if error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in error.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    if isinstance(error, NotFound) and error.resource_type:
        info = error_details_pb2.ResourceInfo(
            resource_type=error.resource_type, resource_name=error.resource_name, description=error.message
        )
        packed = any_pb2.Any()
        packed.Pack(info)
        details.append(packed)
    status = status_pb2.Status(code=getattr(code_pb2, error.code), message=error.message, details=details)
    return rpc_status.to_status(status)


def rpc_boundary(method: F) -> F:
    """Wrap a servicer method: map ServiceError, request-id conflicts and Redis errors to statuses."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except ServiceError as exc:
            context.abort_with_status(to_status(exc))
        except RequestConflict as exc:
            context.abort_with_status(
                to_status(
                    InvalidArgument(
                        str(exc), violations=[("request_id", "already used with different content")]
                    )
                )
            )
        except redis.exceptions.BusyLoadingError as exc:  # a ConnectionError subclass: test it first
            _count(self, "loading")
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the store (Redis) is loading its data: {exc}; retry")
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            _count(self, "unreachable")
            logger.warning("redis unavailable in %s: %s", method.__name__, exc)
            context.abort(
                grpc.StatusCode.UNAVAILABLE, f"the store (Redis) is unreachable: {exc}; retry later"
            )
        except redis.exceptions.RedisError as exc:  # e.g. out of memory, a read-only replica
            _count(self, "refused")
            logger.error("redis refused %s: %s", method.__name__, exc)
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the store (Redis) refused the operation: {exc}")
        except (
            PlanInvalid
        ) as exc:  # a solver bug caught by the validator: the plan is neither stored nor served
            logger.error("plan failed validation in %s: %s", method.__name__, exc)
            context.abort(
                grpc.StatusCode.INTERNAL, f"the solved plan failed validation and was discarded: {exc}"
            )
        raise AssertionError("unreachable")  # abort raises

    return wrapper  # type: ignore[return-value]


def _count(servicer: Any, kind: str) -> None:
    """Tell the servicer's metrics (if any) that Redis failed this way."""
    hook = getattr(servicer, "on_redis_error", None)
    if hook is not None:
        hook(kind)

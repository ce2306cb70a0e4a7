"""The error boundary: domain errors and Redis failures become gRPC statuses with rich details.

Every servicer method is wrapped by `rpc_boundary`, so bad input never surfaces as INTERNAL and a
Redis outage answers UNAVAILABLE with a clear message. The rich status travels in the trailing metadata,
which gRPC peers cap (8 KiB soft, 16 KiB hard by default): `to_status` keeps it well under that, listing
as many field violations as fit and then one that says how many more there are. `DecodeErrorInterceptor`
turns a request body that is not a valid message into INVALID_ARGUMENT (gRPC itself answers INTERNAL).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import redis
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from allocator.errors import InvalidArgument, NotFound, ServiceError
from allocator.store.idempotent import RequestConflict
from allocator.validate import PlanInvalid

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Bounds of what one status carries (bytes of the serialised google.rpc.Status, before base64): the
# trailer must stay under the 8 KiB a gRPC peer accepts for sure, or the client gets RESOURCE_EXHAUSTED
# ("received metadata size exceeds limit") and loses the details.
MAX_VIOLATION_BYTES = 3_000
MAX_TEXT = 256  # characters of a message, a field path or a description


def to_status(error: ServiceError) -> grpc.Status:
    details: list[any_pb2.Any] = []
    message = _clip(error.message)
    if error.violations:
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.BadRequest(field_violations=_bounded_violations(error.violations)))
        details.append(packed)
    if isinstance(error, NotFound) and error.resource_type:
        info = error_details_pb2.ResourceInfo(
            resource_type=_clip(error.resource_type),
            resource_name=_clip(error.resource_name),
            description=message,
        )
        packed = any_pb2.Any()
        packed.Pack(info)
        details.append(packed)
    status = status_pb2.Status(code=getattr(code_pb2, error.code), message=message, details=details)
    return rpc_status.to_status(status)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _bounded_violations(
    violations: list[tuple[str, str]],
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The violations in order while they fit MAX_VIOLATION_BYTES; then one naming how many were left out."""
    out: list[error_details_pb2.BadRequest.FieldViolation] = []
    size = 0
    for i, (path, description) in enumerate(violations):
        item = error_details_pb2.BadRequest.FieldViolation(field=_clip(path), description=_clip(description))
        size += item.ByteSize() + 4  # tag and length prefix
        if size > MAX_VIOLATION_BYTES - 2 * MAX_TEXT:  # keep room for the note below
            rest = len(violations) - i
            note = f"and {rest} more bad field(s) not listed here; fix these and send again to see them"
            out.append(error_details_pb2.BadRequest.FieldViolation(field=_clip(path), description=note))
            break
        out.append(item)
    return out


def rpc_boundary(method: F) -> F:
    """Wrap a servicer method: map ServiceError, request-id conflicts and Redis errors to statuses."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Message):
            # Fields this server does not know are neither validated nor understood: drop them, so
            # they are never stored with a record (a later version would read them unvalidated) and
            # never make a retry look like different content.
            request.DiscardUnknownFields()
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
        except (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.RedisClusterException,  # not a RedisError: e.g. a slot no node covers
        ) as exc:
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


class HandlerCache:
    """Wrapped method handlers by the handler they wrap, so an interceptor builds its wrapper once per
    method instead of once per call (grpcio runs interceptors on its one polling thread, under the server's
    lock, for every call). Bounded: handlers made per call (an access denial) do not pile up."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._wrapped: dict[tuple[int, str], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def get(
        self,
        handler: grpc.RpcMethodHandler,
        method: str,
        wrap: Callable[[grpc.RpcMethodHandler], grpc.RpcMethodHandler],
    ) -> grpc.RpcMethodHandler:
        """`wrap(handler)` for calls to `method`, built on the first call (a wrapper may name its method,
        so one handler serving several methods gets one wrapper each)."""
        key = (id(handler), method)
        hit = self._wrapped.get(key)
        if hit is not None and hit[0] is handler:  # the entry keeps the handler alive: its id is not reused
            return hit[1]
        wrapped = wrap(handler)
        if len(self._wrapped) >= self._size:
            self._wrapped.clear()
        self._wrapped[key] = (handler, wrapped)
        return wrapped


class Undecodable:
    """What DecodeErrorInterceptor's deserializer returns for bytes that are not a valid request."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class DecodeErrorInterceptor(grpc.ServerInterceptor):
    """Answer INVALID_ARGUMENT (field violation on "request") for a body that is not a valid message.

    gRPC's own deserializer failure is INTERNAL ("Exception deserializing request!"). This interceptor
    swaps each method's deserializer for one that returns an `Undecodable` marker instead of raising,
    and the method's behaviour for one that rejects the marker before the servicer sees it. Register it
    after any interceptor that should observe the status (e.g. metrics): interceptors=[metrics, this].
    """

    def __init__(self) -> None:
        self._cache = HandlerCache()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None or handler.request_streaming:
            return handler
        method = handler_call_details.method
        return self._cache.get(handler, method, lambda h: _lenient(h, method))


def _lenient(handler: Any, method: str) -> grpc.RpcMethodHandler:
    """The handler with a deserializer that returns `Undecodable` instead of raising, and behaviours
    that reject it before the servicer sees it."""
    decode = handler.request_deserializer

    def lenient(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception as exc:  # any decode failure is the client's bad input
            return Undecodable(exc)

    if handler.unary_unary is not None:
        unary = handler.unary_unary

        def unary_behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                _reject_undecodable(method, request, context)
            return unary(request, context)

        return handler._replace(request_deserializer=lenient, unary_unary=unary_behaviour)
    if handler.unary_stream is not None:
        stream = handler.unary_stream

        def stream_behaviour(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            if isinstance(request, Undecodable):
                _reject_undecodable(method, request, context)
            yield from stream(request, context)

        return handler._replace(request_deserializer=lenient, unary_stream=stream_behaviour)
    return handler


def _reject_undecodable(method: str, request: Undecodable, context: grpc.ServicerContext) -> None:
    logger.info("undecodable request to %s: %s", method, request.error)
    error = InvalidArgument(
        f"the request body of {method} is not a valid protobuf message",
        violations=[("request", f"cannot be decoded: {request.error}")],
    )
    context.abort_with_status(to_status(error))


def _count(servicer: Any, kind: str) -> None:
    """Tell the servicer's metrics (if any) that Redis failed this way."""
    hook = getattr(servicer, "on_redis_error", None)
    if hook is not None:
        hook(kind)

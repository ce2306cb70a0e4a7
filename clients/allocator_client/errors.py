"""The one exception the client library raises: a failed RPC with its code and rich status details."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

logger = logging.getLogger(__name__)

__all__ = ["AllocatorError"]

# Detail types callers may meet; anything else stays available as the raw Any.
_KNOWN_DETAILS: tuple[type[Message], ...] = (
    error_details_pb2.BadRequest,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.QuotaFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.ErrorInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.DebugInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
)


class AllocatorError(Exception):
    """A call to the allocation service failed.

    Carries the gRPC status code, the server's message, the field violations of a
    ``google.rpc.BadRequest`` detail as ``(field, description)`` pairs, and every other
    detail message unpacked (``.details``), so callers never parse trailing metadata themselves.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        field_violations: list[tuple[str, str]] | None = None,
        details: list[Message] | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}" if message else code.name)
        self.code = code
        self.message = message
        self.field_violations: list[tuple[str, str]] = list(field_violations or [])
        self.details: list[Message] = list(details or [])

    @property
    def retryable(self) -> bool:
        """True for codes where retrying the same (idempotent) request may succeed."""
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

    @classmethod
    def from_status(cls, status: status_pb2.Status) -> AllocatorError:
        """Build the error from a ``google.rpc.Status`` (the rich status a server attaches)."""
        code = _status_code(status.code)
        violations: list[tuple[str, str]] = []
        details: list[Message] = []
        for packed in status.details:
            unpacked = _unpack(packed)
            if isinstance(unpacked, error_details_pb2.BadRequest):
                violations.extend((v.field, v.description) for v in unpacked.field_violations)
            else:
                details.append(unpacked)
        return cls(code, status.message, field_violations=violations, details=details)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> AllocatorError:
        """Build the error from what a stub raised, reading the rich status when there is one."""
        call: Any = error
        if not (hasattr(call, "code") and hasattr(call, "details")):
            return cls(grpc.StatusCode.UNKNOWN, str(error))
        code: grpc.StatusCode = call.code() or grpc.StatusCode.UNKNOWN
        text: str = call.details() or ""
        try:
            status = rpc_status.from_call(call)
        except ValueError:
            # The rich status disagrees with the plain one: trust the plain code, keep going.
            logger.warning("inconsistent rich status on %s error; ignoring its details", code.name)
            status = None
        if status is None:
            return cls(code, text)
        return cls.from_status(status)


def _status_code(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


def _unpack(packed: any_pb2.Any) -> Message:
    for detail_type in _KNOWN_DETAILS:
        if packed.TypeName() == detail_type.DESCRIPTOR.full_name:
            detail = detail_type()
            packed.Unpack(detail)
            return detail
    return packed

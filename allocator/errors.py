"""Domain errors that carry their gRPC status code (by name, so this module needs no gRPC import).

The servicer's error boundary (allocator/service/status.py) turns them into a status with details:
google.rpc.BadRequest field violations, ResourceInfo, PreconditionFailure.
"""

from __future__ import annotations

from collections.abc import Sequence


class ServiceError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, *, violations: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.violations = list(violations)


class InvalidArgument(ServiceError):
    """Bad input: violations name every bad field as (field path, description)."""

    code = "INVALID_ARGUMENT"


class NotFound(ServiceError):
    code = "NOT_FOUND"

    def __init__(self, message: str, *, resource: tuple[str, str] = ("", "")) -> None:
        super().__init__(message)
        self.resource_type, self.resource_name = resource


class FailedPrecondition(ServiceError):
    """The system is not in a state for the call (e.g. no inventory for the date)."""

    code = "FAILED_PRECONDITION"


class ResourceExhausted(ServiceError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(ServiceError):
    code = "UNAVAILABLE"

"""What every allocatorctl command shares: global options, connecting, output, enum parsing, exit codes."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import pathlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console, RenderableType

from allocator_client.client import AllocatorClient
from allocator_client.errors import AllocatorError
from allocator_client.paging import PagedRequest, iter_pages
from trafficalloc.v1 import allocator_pb2 as pb

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=PagedRequest)
R = TypeVar("R")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_OK, EXIT_OTHER, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_REJECTED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4, 5
# Number options checked while parsing (exit 2), where the server cannot check them or a bad value would
# only surface as an unrelated error: a deadline over a day is surely a typo (the client library itself
# takes inf as no deadline), a solve's time limit is the server's 0..3600 (docs/api.md), and an int64
# field cannot carry a larger integer at all.
MAX_TIMEOUT_S = 86_400.0
MAX_TIME_LIMIT_S = 3_600.0
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_EXIT_CODES = {
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_REJECTED,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_REJECTED,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
}


def finite(value: float) -> float:
    """Option callback: refuse nan and infinities, which a min/max range alone may let through."""
    if not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


def int64(value: int, option: str, meaning: str) -> int:
    """An integer bound for an int64 field, or a usage error saying what the API takes (`meaning`)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise typer.BadParameter(f"{value} is out of range; {meaning}", param_hint=option)
    return value


def exit_code_for(code: grpc.StatusCode) -> int:
    """3 NOT_FOUND, 4 INVALID_ARGUMENT / FAILED_PRECONDITION, 5 UNAVAILABLE, 1 anything else."""
    return _EXIT_CODES.get(code, EXIT_OTHER)


@dataclass(frozen=True)
class CliState:
    """The global options, stored on the click context by the root callback."""

    target: str
    timeout: float
    json_output: bool
    token: str | None = None  # None: ALLOCATOR_TOKEN
    tls_ca: pathlib.Path | None = None  # None: ALLOCATOR_TLS_CA


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        raise RuntimeError("allocatorctl's root callback did not run")
    return root.obj


@contextmanager
def connect(ctx: typer.Context) -> Iterator[AllocatorClient]:
    """A client for the command's duration, with the global target and deadline.

    Access (docs/operations.md): the bearer token from ALLOCATOR_TOKEN (an environment variable rather than
    a flag, so it never shows in `ps`); TLS when ALLOCATOR_TLS_CA names the CA's PEM file (or
    ALLOCATOR_TLS=1 for the system's CAs), mutual TLS with ALLOCATOR_TLS_CERT and ALLOCATOR_TLS_KEY.
    """
    options = state(ctx)
    env = os.environ
    ca = options.tls_ca or _path(env.get("ALLOCATOR_TLS_CA"))
    cert, key = _path(env.get("ALLOCATOR_TLS_CERT")), _path(env.get("ALLOCATOR_TLS_KEY"))
    try:
        tls = {
            "root_certificates": ca.read_bytes() if ca else None,
            "client_certificate": cert.read_bytes() if cert else None,
            "client_key": key.read_bytes() if key else None,
        }
    except OSError as exc:
        raise typer.BadParameter(f"cannot read a TLS file: {exc}") from None
    with AllocatorClient(
        options.target,
        timeout=options.timeout,
        token=options.token or env.get("ALLOCATOR_TOKEN") or None,
        tls=env.get("ALLOCATOR_TLS", "").lower() in ("1", "true", "yes"),
        **tls,
    ) as client:
        yield client


def _path(value: str | None) -> pathlib.Path | None:
    return pathlib.Path(value) if value else None


def emit(ctx: typer.Context, message: Message, view: Callable[[], RenderableType]) -> None:
    """Print the message as JSON (``--json``), otherwise the rich view of it."""
    if state(ctx).json_output:
        typer.echo(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2))
    else:
        console.print(view())


def report_error(error: AllocatorError, *, json_output: bool) -> int:
    """Print a failed call to stderr (every field violation on its own line); return the exit code."""
    if json_output:
        payload = {
            "code": error.code.name,
            "message": error.message,
            "field_violations": [{"field": f, "description": d} for f, d in error.field_violations],
        }
        typer.echo(json.dumps(payload), err=True)
    else:
        err_console.print(f"[bold red]error[/]: {error.code.name}: {error.message}", markup=True)
        for field, description in error.field_violations:
            err_console.print(f"  {field}: {description}", markup=False)
        for detail in error.details:
            err_console.print(f"  {type(detail).__name__}: {json_format.MessageToJson(detail, indent=None)}")
    return exit_code_for(error.code)


def _enum_value(text: str, items: Sequence[tuple[str, int]], prefix: str, aliases: dict[str, str]) -> int:
    """Accept 'payment', 'payment_success', 'PAYMENT_SUCCESS' or 'CHANNEL_PAYMENT_SUCCESS'."""
    names = {name.removeprefix(prefix): number for name, number in items if not name.endswith("UNSPECIFIED")}
    key = text.strip().upper().replace("-", "_").removeprefix(prefix)
    key = aliases.get(key, key)
    if key not in names:
        choices = ", ".join(n.lower() for n in [*names, *aliases])
        raise typer.BadParameter(f"{text!r} is not one of: {choices}")
    return names[key]


_CHANNEL_ALIASES = {
    "HOME": "HOMEPAGE_CARD",
    "HOMEPAGE": "HOMEPAGE_CARD",
    "PAYMENT": "PAYMENT_SUCCESS",
    "SEARCH": "SEARCH_RECOMMENDATION",
}


def parse_channel(text: str) -> pb.Channel.ValueType:
    return pb.Channel.ValueType(_enum_value(text, list(pb.Channel.items()), "CHANNEL_", _CHANNEL_ALIASES))


def parse_program(text: str) -> pb.Program.ValueType:
    aliases = {"STAR": "STAR_PLAN", "LUOMA": "LUOMA_PLAN"}
    return pb.Program.ValueType(_enum_value(text, list(pb.Program.items()), "PROGRAM_", aliases))


def parse_redemption_status(text: str) -> pb.RedemptionStatus.ValueType:
    items = list(pb.RedemptionStatus.items())
    return pb.RedemptionStatus.ValueType(_enum_value(text, items, "REDEMPTION_STATUS_", {}))


def parse_channels(values: Sequence[str]) -> list[pb.Channel.ValueType]:
    return [parse_channel(part) for value in values for part in value.split(",") if part.strip()]


def parse_regions(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def tomorrow() -> str:
    return (dt.date.today() + dt.timedelta(days=1)).isoformat()


def collect_pages(fetch: Callable[[M], R], request: M, field: str, *, all_pages: bool) -> R:
    """One page, or with ``all_pages`` the first response with every later page's items appended."""
    first = fetch(request)
    token: str = getattr(first, "next_page_token", "")
    if not all_pages or not token:
        return first
    rest = type(request)()
    rest.CopyFrom(request)
    setattr(rest, "page_token", token)  # noqa: B010 - every paged request has it
    getattr(first, field).extend(iter_pages(fetch, rest, lambda page: getattr(page, field)))
    setattr(first, "next_page_token", "")  # noqa: B010
    return first

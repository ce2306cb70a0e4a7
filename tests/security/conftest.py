"""Security tests: a real redis-server on a free loopback port and real servers on port 0.

Fixtures here are prefixed `bad_` (bad-input tests) so they never clash with other security tests.
The helpers below (`Outcome`, `call`, `snapshot`) are imported by the bad-input test modules.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import pathlib
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import redis
from google.protobuf import descriptor as _descriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import strategies as st

from allocator.server import App, start_app
from allocator.service.validation import make_page_token
from allocator.settings import Settings
from allocator.store.embedded import EmbeddedRedis
from trafficalloc.v1 import allocator_pb2 as pb
from trafficalloc.v1 import allocator_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["AllocatorService"]
METHODS: list[_descriptor.MethodDescriptor] = list(SERVICE.methods)

# Every status a bad request may get; OK only when the request is valid.
REJECTIONS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
ALLOWED = REJECTIONS | {grpc.StatusCode.OK}
CALL_TIMEOUT_S = 60.0


def path_of(method: _descriptor.MethodDescriptor) -> str:
    return f"/{SERVICE.full_name}/{method.name}"


def implemented(method: _descriptor.MethodDescriptor) -> bool:
    """False for an RPC in the proto that the servicer does not override yet (it answers UNIMPLEMENTED)."""
    from allocator.service.servicer import AllocatorServicer

    base = getattr(pb_grpc.AllocatorServiceServicer, method.name, None)
    return getattr(AllocatorServicer, method.name, base) is not base


@dataclass
class Outcome:
    """What one call came back with: the code, the plain message, the rich status and its details."""

    code: grpc.StatusCode
    message: str = ""
    response: Any = None
    status: status_pb2.Status | None = None
    violations: list[tuple[str, str]] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # type names of every detail
    trailer_bytes: int = 0

    @property
    def fields(self) -> set[str]:
        return {f for f, _ in self.violations}

    def describe(self) -> str:
        return f"{self.code.name}: {self.message[:300]} {self.violations[:8]}"


def outcome_of(error: grpc.RpcError) -> Outcome:
    call: Any = error
    code: grpc.StatusCode = call.code()
    trailer = call.trailing_metadata() or ()
    out = Outcome(code=code, message=call.details() or "")
    out.trailer_bytes = sum(len(k) + len(v) for k, v in trailer)
    status = rpc_status.from_call(call)  # raises ValueError if the rich status disagrees with the code
    if status is not None:
        out.status = status
        for packed in status.details:
            out.details.append(packed.TypeName())
            bad = error_details_pb2.BadRequest()
            if packed.Is(bad.DESCRIPTOR) and packed.Unpack(bad):
                out.violations += [(v.field, v.description) for v in bad.field_violations]
    return out


def call(channel: grpc.Channel, method: _descriptor.MethodDescriptor, request: Message | bytes) -> Outcome:
    """Call one RPC through a raw channel; `request` is a message or raw bytes sent as they are."""
    response_type = message_class(method.output_type)
    body = request if isinstance(request, bytes) else request.SerializeToString()
    kwargs: dict[str, Callable[..., Any]] = {
        "request_serializer": lambda b: b,
        "response_deserializer": response_type.FromString,
    }
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path_of(method), **kwargs)
            return Outcome(grpc.StatusCode.OK, response=list(stream(body, timeout=CALL_TIMEOUT_S)))
        unary = channel.unary_unary(path_of(method), **kwargs)
        return Outcome(grpc.StatusCode.OK, response=unary(body, timeout=CALL_TIMEOUT_S))
    except grpc.RpcError as exc:
        return outcome_of(exc)


def message_class(desc: _descriptor.Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(desc)


def snapshot(client: redis.Redis, prefix: str) -> dict[bytes, bytes | None]:
    """Every key under the prefix with its DUMP (type and value, not TTL), in one pipeline."""
    keys = sorted(client.scan_iter(f"{prefix}:*", count=10_000))
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.dump(k)
    return dict(zip(keys, pipe.execute(), strict=True))


@dataclass
class BadServer:
    """A running server with a raw channel, the generated stub and a Redis client on its store."""

    app: App
    settings: Settings
    channel: grpc.Channel
    stub: pb_grpc.AllocatorServiceStub
    redis: redis.Redis

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    @property
    def prefix(self) -> str:
        return self.settings.key_prefix

    def snapshot(self) -> dict[bytes, bytes | None]:
        return snapshot(self.redis, self.prefix)

    def call(self, method: _descriptor.MethodDescriptor | str, request: Message | bytes) -> Outcome:
        desc = SERVICE.methods_by_name[method] if isinstance(method, str) else method
        return call(self.channel, desc, request)

    def health(self) -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE.full_name), timeout=10)
        return int(reply.status)

    def wait_serving(self, timeout_s: float = 30.0) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        for reply in stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE.full_name), timeout=timeout_s):
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return


class BadServerFactory:
    """Starts servers on the shared Redis, each under its own key prefix; stops them at teardown."""

    def __init__(self, redis_url: str, tmp: pathlib.Path) -> None:
        self.redis_url = redis_url
        self.tmp = tmp
        self.running: list[BadServer] = []

    def start(self, **overrides: Any) -> BadServer:
        fields: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "redis_url": self.redis_url,
            "key_prefix": f"bad{uuid.uuid4().hex[:8]}",
            "shutdown_grace_s": 1.0,
            "data_dir": self.tmp / "data",
            "log_level": "WARNING",
            "solve_time_limit_s": 10.0,
        }
        fields.update(overrides)
        settings = Settings(**fields)
        app = start_app(settings)
        channel = grpc.insecure_channel(
            f"127.0.0.1:{app.port}",
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
        )
        server = BadServer(
            app,
            settings,
            channel,
            pb_grpc.AllocatorServiceStub(channel),
            redis.Redis.from_url(self.redis_url),
        )
        self.running.append(server)
        server.wait_serving()
        return server

    def close(self) -> None:
        for server in self.running:
            server.channel.close()
            server.redis.close()
            server.app.stop(0.5)


@pytest.fixture(scope="session")
def bad_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server on a free loopback port, shared by the bad-input tests of the session."""
    instance = EmbeddedRedis(tmp_path_factory.mktemp("bad-redis")).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def bad_servers(
    bad_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BadServerFactory]:
    factory = BadServerFactory(bad_redis.url, tmp_path_factory.mktemp("bad-server"))
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def bad_server(bad_servers: BadServerFactory) -> BadServer:
    """One real server (default settings but a short solve limit) for the test module."""
    return bad_servers.start()


@pytest.fixture
def bad_health_after(bad_server: BadServer) -> Iterator[None]:
    """After the test: the server still answers health (SERVING) and a plain RPC."""
    yield
    assert bad_server.health() == health_pb2.HealthCheckResponse.SERVING
    assert bad_server.stub.GetRules(pb.GetRulesRequest(), timeout=10).channels


# ---- hostile requests for any RPC, built from the descriptor ------------------------------------
#
# Each field draws from a pool of values that look valid (known merchants, ids, the seeded date, the
# plan that exists, issued page tokens) and hostile ones (empty, whitespace, control characters, 10k
# characters, NaN and infinities, negative and huge numbers, undefined enum numbers, duplicates), so
# one strategy reaches OK, NOT_FOUND, FAILED_PRECONDITION and INVALID_ARGUMENT. It needs only the
# descriptor, so an RPC added to the proto later is fuzzed too.

FD = _descriptor.FieldDescriptor
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
INT_BOUNDS = {
    FD.TYPE_INT32: INT32,
    FD.TYPE_SINT32: INT32,
    FD.TYPE_SFIXED32: INT32,
    FD.TYPE_INT64: INT64,
    FD.TYPE_SINT64: INT64,
    FD.TYPE_SFIXED64: INT64,
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}


@dataclass
class Pools:
    """Valid-looking values of the seeded store that requests should often hit."""

    dates: list[str]
    merchants: list[str]
    redemption_ids: list[str]
    plan_ids: list[str]
    regions: list[str]


HOSTILE_STRINGS = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "a b",
            "tab\there",
            "nul\x00byte",
            "line\nbreak",
            "\u202eevil",
            "\u200b",
            "x" * 129,
            "x" * 10_000,
            "é" * 65,
            "😀" * 200,
            "../../etc/passwd",
            "{red}:data",
            "*",
            "%s%n",
            "' OR 1=1 --",
            "-",
            "+",
            "(",
            "[",
        ]
    ),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=120, max_size=400),
)
HOSTILE_DATES = st.sampled_from(
    [
        "",
        "2026-13-01",
        "2026-02-30",
        "2026-12-1",
        "26-12-01",
        "2026/12/01",
        "2026-W49-2",
        "20261201",
        "20261201  ",
        "2026-335",
        "0000-01-01",
        "１２３４-１２-０１",
        "2026-12-0١",
        " 2026-12-01",
        "2026-12-01T00:00:00",
        "yesterday",
        "9" * 10_000,
    ]
)
FLOATS = st.one_of(
    st.floats(min_value=0.001, max_value=1_000.0),
    st.sampled_from([0.0, -0.0, -1.0, 1e-300, 5e-324, 1_000.0000001, 3_600.0, 3_600.5, 1e308, -1e308]),
    st.sampled_from([math.nan, math.inf, -math.inf, -math.nan]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _token_strategy(pools: Pools) -> st.SearchStrategy[str]:
    cursors = st.one_of(
        st.sampled_from(["1", "5", "0", "007", "143", "10000000", "²", "٣", "-1", " 1", "9" * 40]),
        st.sampled_from(pools.redemption_ids + pools.merchants),
        st.text(max_size=20),
    )
    return st.one_of(
        st.just(""),
        cursors.map(lambda c: make_page_token(c) if c else ""),
        st.sampled_from(["garbage!", "bm90LW91cnM", "Yzo", "Yzo=", "Yzo1!!", "YzoxMA==", "x" * 5000, "é"]),
        st.text(max_size=30),
    )


def _int_strategy(f: _descriptor.FieldDescriptor) -> st.SearchStrategy[int]:
    lo, hi = INT_BOUNDS[f.type]
    name = f.name
    near: list[int] = [0, 1, -1, lo, hi, lo + 1, hi - 1]
    if name == "hour" or name.endswith("_hour"):
        typical: st.SearchStrategy[int] = st.integers(0, 23)
        near += [23, 24, 25, -24]
    elif name == "page_size":
        typical = st.integers(0, 1_000)
        near += [1_000, 1_001, 100]
    elif name == "count":
        typical = st.integers(1, 50)
        near += [50, 51]
    elif name in ("points", "capacity_impressions", "impressions"):
        typical = st.integers(1, 10_000)
        near += [10**12, 10**12 + 1]
    elif name == "price_points_per_mille":
        typical = st.integers(0, 1_000)
        near += [10**6, 10**6 + 1]
    else:
        typical = st.integers(0, 1_000)
    near = [n for n in near if lo <= n <= hi]
    return st.one_of(typical, st.sampled_from(near), st.integers(lo, hi))


def _string_strategy(f: _descriptor.FieldDescriptor, pools: Pools) -> st.SearchStrategy[str]:
    name = f.name
    if name == "request_id":
        typical: st.SearchStrategy[str] = st.uuids().map(lambda u: f"req-{u.hex[:16]}")
    elif name.endswith("date"):
        return st.one_of(st.sampled_from(pools.dates), st.sampled_from(pools.dates), HOSTILE_DATES)
    elif name in ("merchant_id", "merchant_ids"):
        typical = st.sampled_from(pools.merchants)
    elif name == "redemption_id":
        typical = st.sampled_from(pools.redemption_ids)
    elif name == "plan_id":
        typical = st.sampled_from(pools.plan_ids)
    elif name in ("region", "regions"):
        typical = st.sampled_from(pools.regions)
    elif name == "page_token":
        return _token_strategy(pools)
    else:
        typical = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
    return st.one_of(typical, typical, typical, HOSTILE_STRINGS)


def _enum_strategy(f: _descriptor.FieldDescriptor) -> st.SearchStrategy[int]:
    assert f.enum_type is not None
    defined = [v.number for v in f.enum_type.values]
    return st.one_of(
        st.sampled_from([n for n in defined if n] or defined),
        st.sampled_from([0, 99, -5, 4, 7, 2**31 - 1, -(2**31)]),
    )


def _scalar_strategy(f: _descriptor.FieldDescriptor, pools: Pools, depth: int) -> st.SearchStrategy[Any]:
    if f.type == FD.TYPE_MESSAGE:
        assert f.message_type is not None
        return message_strategy(f.message_type, pools, depth + 1)
    if f.type == FD.TYPE_ENUM:
        return _enum_strategy(f)
    if f.type == FD.TYPE_STRING:
        return _string_strategy(f, pools)
    if f.type == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    if f.type == FD.TYPE_BOOL:
        return st.booleans()
    if f.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return (
            FLOATS
            if f.type == FD.TYPE_DOUBLE
            else FLOATS.filter(lambda x: not abs(x) > 3.4e38 or math.isinf(x))
        )
    return _int_strategy(f)


@st.composite
def _repeated(draw: st.DrawFn, elements: st.SearchStrategy[Any]) -> list[Any]:
    items = draw(st.lists(elements, max_size=4))
    if items and draw(st.integers(0, 5)) == 0:  # a duplicate entry
        items.append(items[draw(st.integers(0, len(items) - 1))])
    return items


def message_strategy(
    desc: _descriptor.Descriptor, pools: Pools, depth: int = 0
) -> st.SearchStrategy[Message]:
    """Messages of this type whose every field is unset, valid-looking or hostile."""
    cls = message_class(desc)
    if depth > 3:
        return st.builds(cls)
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for f in desc.fields:
        one = _scalar_strategy(f, pools, depth)
        if f.is_repeated:
            parts[f.name] = _repeated(one)
        else:
            parts[f.name] = st.one_of(st.none(), one, one, one)  # None: leave unset

    def build(values: dict[str, Any]) -> Message:
        msg = cls()
        for f in desc.fields:
            value = values[f.name]
            if value is None:
                continue
            if f.is_repeated:
                target = getattr(msg, f.name)
                if f.type == FD.TYPE_MESSAGE:
                    for item in value:
                        target.add().CopyFrom(item)
                else:
                    target.extend(value)
            elif f.type == FD.TYPE_MESSAGE:
                getattr(msg, f.name).CopyFrom(value)
            else:
                setattr(msg, f.name, value)
        return msg

    return st.fixed_dictionaries(parts).map(build)


def unknown_fields(desc: _descriptor.Descriptor) -> st.SearchStrategy[bytes]:
    """Well-formed wire bytes of fields the message does not define (every wire type but groups)."""
    known = {f.number for f in desc.fields}
    numbers = st.one_of(
        st.integers(1, 200), st.integers(1_000, 18_999), st.integers(20_000, 2**29 - 1)
    ).filter(lambda n: n not in known)

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def encode(number: int, wire: int, payload: bytes) -> bytes:
        return varint(number << 3 | wire) + payload

    one = st.one_of(
        st.builds(lambda n, v: encode(n, 0, varint(v)), numbers, st.integers(0, 2**64 - 1)),
        st.builds(lambda n, b: encode(n, 1, b), numbers, st.binary(min_size=8, max_size=8)),
        st.builds(lambda n, b: encode(n, 2, varint(len(b)) + b), numbers, st.binary(max_size=300)),
        st.builds(lambda n, b: encode(n, 5, b), numbers, st.binary(min_size=4, max_size=4)),
    )
    return st.lists(one, min_size=1, max_size=5).map(b"".join)


# ---- what the API promises: an independent model of the validation rules (docs/api.md) ---------

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
MAX_ID, MAX_REGION, MAX_REGIONS, MAX_BATCH, MAX_NODES = 128, 64, 64, 10_000, 100_000


def is_id(s: str) -> bool:
    return 0 < len(s) <= MAX_ID and s.isprintable() and not any(c.isspace() for c in s)


def as_date(s: str) -> dt.date | None:
    if not _DATE_RE.fullmatch(s):
        return None
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        return None


def is_region(s: str) -> bool:
    return 0 < len(s) <= MAX_REGION and s.isprintable()


def regions_ok(values: Sequence[str]) -> bool:
    return 0 < len(values) <= MAX_REGIONS and all(map(is_region, values)) and len(set(values)) == len(values)


def finite_in(x: float, lo_exclusive: float, hi: float) -> bool:
    return math.isfinite(x) and lo_exclusive < x <= hi


def token_cursor(token: str) -> str | None:
    """The cursor of a token the service could have issued, or None."""
    if not token:
        return ""
    if len(token) > 8 * MAX_ID or not _TOKEN_RE.fullmatch(token):
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except ValueError:
        return None
    cursor = text[2:]
    if not text.startswith("c:") or (cursor and not is_id(cursor)):
        return None
    return cursor


def offset_ok(token: str) -> bool:
    cursor = token_cursor(token)
    return cursor is not None and (cursor == "" or re.fullmatch(r"[0-9]{1,18}", cursor, re.ASCII) is not None)


def _range(bad: set[str], a: str, av: str, b: str, bv: str, max_days: int) -> None:
    start, end = as_date(av), as_date(bv)
    if start is None:
        bad.add(a)
    if end is None:
        bad.add(b)
    if start and end and (end < start or (end - start).days + 1 > max_days):
        bad.add(b)


def _program_channels(
    bad: set[str], program: int, channels: Sequence[int], rules: dict[int, set[int]]
) -> None:
    if program not in rules:
        bad.add("program")
    allowed = rules.get(program)
    if (
        not channels
        or len(set(channels)) != len(channels)
        or any(c not in (1, 2, 3) or (allowed is not None and c not in allowed) for c in channels)
    ):
        bad.add("channels")


def expected_bad_fields(request: Message, rules: dict[int, set[int]]) -> set[str] | None:
    """Top-level fields the API must reject in this request (empty: valid); None for an RPC not modelled."""
    r: Any = request
    bad: set[str] = set()
    name = request.DESCRIPTOR.name

    def need_id(field: str, required: bool = True) -> None:
        value = getattr(r, field)
        if (value or required) and not is_id(value):
            bad.add(field)

    def need_date(field: str) -> None:
        if as_date(getattr(r, field)) is None:
            bad.add(field)

    def paging(offset: bool) -> None:
        if not 0 <= r.page_size <= 1_000:
            bad.add("page_size")
        if not (offset_ok(r.page_token) if offset else token_cursor(r.page_token) is not None):
            bad.add("page_token")

    if name == "PublishInventoryRequest":
        need_id("request_id")
        need_date("date")
        if not r.nodes or len(r.nodes) > MAX_NODES:
            bad.add("nodes")
        keys = [(n.hour, n.channel, n.region) for n in r.nodes]
        for n in r.nodes:
            if not (
                0 <= n.hour <= 23
                and n.channel in (1, 2, 3)
                and is_region(n.region)
                and 0 <= n.capacity_impressions <= 10**12
                and 0 <= n.price_points_per_mille <= 10**6
            ):
                bad.add("nodes")
        if len(set(keys)) != len(keys):
            bad.add("nodes")
    elif name == "GetInventoryRequest":
        need_date("date")
        paging(offset=True)
    elif name == "RecordRedemptionRequest":
        need_id("request_id")
        need_id("merchant_id")
        _program_channels(bad, r.program, r.channels, rules)
        if not 0 < r.points <= 10**12:
            bad.add("points")
        _range(bad, "flight_start_date", r.flight_start_date, "flight_end_date", r.flight_end_date, 366)
        if not regions_ok(r.regions):
            bad.add("regions")
        scored = [q.channel for q in r.quality]
        if len(set(scored)) != len(scored) or any(
            q.channel not in (1, 2, 3) or not finite_in(q.score, 0, 1_000) for q in r.quality
        ):
            bad.add("quality")
    elif name in ("CancelRedemptionRequest", "GetRedemptionRequest"):
        if name == "CancelRedemptionRequest":
            need_id("request_id")
        need_id("redemption_id")
    elif name == "ListRedemptionsRequest":
        paging(offset=False)
        need_id("merchant_id", required=False)
        if r.status not in (0, 1, 2):
            bad.add("status")
    elif name == "SetEligibilityRequest":
        need_id("request_id")
        if not r.entries or len(r.entries) > MAX_BATCH:
            bad.add("entries")
        merchants = [e.merchant_id for e in r.entries]
        if len(set(merchants)) != len(merchants):
            bad.add("entries")
        for e in r.entries:
            sub: set[str] = set()
            _range(sub, "from", e.valid_from_date, "to", e.valid_to_date, 366)
            if (
                sub
                or not is_id(e.merchant_id)
                or not finite_in(e.weight, 0, 1_000)
                or not regions_ok(e.regions)
                or len(set(e.channels)) != len(e.channels)
                or any(c not in (1, 2, 3) for c in e.channels)
            ):
                bad.add("entries")
    elif name == "ClearEligibilityRequest":
        need_id("request_id")
        if not r.merchant_ids or len(r.merchant_ids) > MAX_BATCH or not all(map(is_id, r.merchant_ids)):
            bad.add("merchant_ids")
    elif name == "ListEligibilityRequest":
        paging(offset=False)
    elif name in ("SolveRequest", "SolveStreamRequest"):
        if r.end_date:
            _range(bad, "start_date", r.start_date, "end_date", r.end_date, 31)
        else:
            need_date("start_date")
        if not (math.isfinite(r.time_limit_seconds) and 0 <= r.time_limit_seconds <= 3_600):
            bad.add("time_limit_seconds")
    elif name == "GetPlanRequest":
        need_id("plan_id")
    elif name == "GetActivePlanRequest":
        need_date("date")
    elif name == "ActivatePlanRequest":
        need_id("request_id")
        need_id("plan_id")
    elif name in ("GetMerchantAllocationRequest", "ExplainAllocationRequest"):
        need_id("merchant_id")
        need_date("date")
        need_id("plan_id", required=False)
    elif name == "GetNodeAllocationRequest":
        need_date("date")
        if not 0 <= r.hour <= 23:
            bad.add("hour")
        if r.channel not in (1, 2, 3):
            bad.add("channel")
        if not is_region(r.region):
            bad.add("region")
        need_id("plan_id", required=False)
        paging(offset=True)
    elif name == "GetRulesRequest":
        pass
    elif name == "CheckAvailabilityRequest":
        _program_channels(bad, r.program, r.channels, rules)
        if not regions_ok(r.regions):
            bad.add("regions")
        _range(bad, "flight_start_date", r.flight_start_date, "flight_end_date", r.flight_end_date, 31)
    elif name == "GetPlanReportRequest":
        need_id("plan_id", required=False)
        if r.date or not r.plan_id:
            need_date("date")
    else:
        return None
    return bad


def top_field(path: str) -> str:
    """ "nodes[3].hour" -> "nodes"; "entries[0].valid_from_date" -> "entries"."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]

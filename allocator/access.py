"""Who may call what: bearer tokens with roles, TLS credentials, and credentials-safe Redis URLs.

- An access file (JSON, or TOML by its ``.toml`` suffix) lists tokens, each with a name and roles. A token
  is stored as the hex SHA-256 digest of its text (``sha256``, recommended) or as the text itself
  (``token``, accepted with a warning); either way only the digest is kept in memory, and a presented
  token is compared to every digest with ``hmac.compare_digest``. docs/operations.md shows the format.
- ``METHOD_ROLES`` is the one table of which role each AllocatorService RPC needs. A method missing from
  it is denied to every token (fail closed); tests/security/test_access.py pins that every RPC of the
  proto is in it.
- ``AccessInterceptor`` reads ``authorization: Bearer <token>`` metadata: no token or an unknown one is
  UNAUTHENTICATED, a token without the role PERMISSION_DENIED. Health and reflection stay open unless
  configured otherwise; closed, any valid token may call them. Tokens are never logged or echoed.

``python -m allocator.access new NAME ROLE...`` prints a fresh token and the access-file entry of its digest.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import pathlib
import re
import secrets
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = "trafficalloc.v1.AllocatorService"
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICES = frozenset(
    {"grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)
MIN_PLAINTEXT_TOKEN_CHARS = 16


class Role(enum.StrEnum):
    INGEST = "ingest"  # inventory, redemptions, eligibility
    PLANNER = "planner"  # solve, activate, re-plan
    SERVING = "serving"  # PickMerchants, delivery reports
    READER = "reader"  # queries


# Every RPC of AllocatorService and the role it needs: the one place that says who may call what.
METHOD_ROLES: Mapping[str, Role] = {
    "PublishInventory": Role.INGEST,
    "RecordRedemption": Role.INGEST,
    "CancelRedemption": Role.INGEST,
    "SetEligibility": Role.INGEST,
    "ClearEligibility": Role.INGEST,
    "Solve": Role.PLANNER,
    "SolveStream": Role.PLANNER,
    "ActivatePlan": Role.PLANNER,
    "Replan": Role.PLANNER,
    "PickMerchants": Role.SERVING,
    "ReportDelivery": Role.SERVING,
    "GetInventory": Role.READER,
    "GetRedemption": Role.READER,
    "ListRedemptions": Role.READER,
    "ListEligibility": Role.READER,
    "GetPlan": Role.READER,
    "GetActivePlan": Role.READER,
    "GetMerchantAllocation": Role.READER,
    "GetNodeAllocation": Role.READER,
    "GetRules": Role.READER,
    "ExplainAllocation": Role.READER,
    "CheckAvailability": Role.READER,
    "GetPlanReport": Role.READER,
    "GetDelivery": Role.READER,
}


def required_role(full_method: str) -> Role | None:
    """The role an RPC ("/package.Service/Method") needs; None: no role may call it."""
    service, _, name = full_method.lstrip("/").rpartition("/")
    return METHOD_ROLES.get(name) if service == SERVICE_NAME else None


class AccessConfigError(ValueError):
    """An access file, TLS file or Redis TLS option is unreadable or malformed; the message says which."""


def token_digest(token: str) -> str:
    """The hex SHA-256 of a token's UTF-8 text: what an access file's ``sha256`` holds."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """One access-file entry: a name for messages and logs, its roles, and the digest of its token."""

    name: str
    roles: frozenset[Role]
    digest: bytes = field(repr=False)


@dataclass(frozen=True)
class Denial:
    code: grpc.StatusCode
    message: str


@dataclass(frozen=True)
class AccessPolicy:
    principals: tuple[Principal, ...]
    open_health: bool = True
    open_reflection: bool = True

    @classmethod
    def load(
        cls, path: pathlib.Path, *, open_health: bool = True, open_reflection: bool = True
    ) -> AccessPolicy:
        """Read an access file: TOML if its name ends in .toml, else JSON."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AccessConfigError(f"cannot read access file {path}: {exc.strerror or exc}") from None
        try:
            data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise AccessConfigError(f"access file {path} is not valid {_kind(path)}: {exc}") from None
        principals = parse_principals(data, source=str(path))
        if not principals:
            logger.warning("access file %s lists no token: every RPC will be refused", path)
        return cls(principals, open_health=open_health, open_reflection=open_reflection)

    def authenticate(self, token: str) -> Principal | None:
        """The entry whose digest matches the token, comparing against every entry in constant time."""
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: Principal | None = None
        for principal in self.principals:
            if hmac.compare_digest(principal.digest, digest) and found is None:
                found = principal
        return found

    def check(self, method: str, metadata: Sequence[tuple[str, str | bytes]] | None) -> Denial | None:
        """None if the call may go on, else why not. Never puts the token in the message."""
        service = method.lstrip("/").rpartition("/")[0]
        if (service == HEALTH_SERVICE and self.open_health) or (
            service in REFLECTION_SERVICES and self.open_reflection
        ):
            return None
        token, problem = bearer_token(metadata)
        if token is None:
            return Denial(grpc.StatusCode.UNAUTHENTICATED, problem)
        principal = self.authenticate(token)
        if principal is None:
            return Denial(grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token")
        if service == HEALTH_SERVICE or service in REFLECTION_SERVICES:
            return None  # closed to anonymous callers only
        role = required_role(method)
        short = method.rpartition("/")[2]
        if role is None:
            return Denial(grpc.StatusCode.PERMISSION_DENIED, f"{short} is not open to any role")
        if role not in principal.roles:
            held = ", ".join(sorted(principal.roles)) or "none"
            return Denial(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token {principal.name!r} (roles: {held}) may not call {short}: it needs role {role}",
            )
        return None


def parse_principals(data: Any, *, source: str = "access file") -> tuple[Principal, ...]:
    """Validate the parsed document ``{"tokens": [{"name", "sha256" | "token", "roles"}, ...]}``."""
    if not isinstance(data, dict) or set(data) - {"tokens"}:
        extra = sorted(set(data) - {"tokens"}) if isinstance(data, dict) else []
        raise AccessConfigError(f"{source}: expected a table holding only 'tokens', not {extra or data!r}")
    entries = data.get("tokens", [])
    if not isinstance(entries, list):
        raise AccessConfigError(f"{source}: 'tokens' must be a list of tables")
    principals: list[Principal] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for i, entry in enumerate(entries):
        where = f"{source}: tokens[{i}]"
        if not isinstance(entry, dict):
            raise AccessConfigError(f"{where} must be a table")
        unknown = set(entry) - {"name", "sha256", "token", "roles"}
        if unknown:
            raise AccessConfigError(f"{where} has unknown keys {sorted(unknown)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise AccessConfigError(f"{where} needs a non-empty 'name'")
        where = f"{source}: token {name!r}"
        if name in names:
            raise AccessConfigError(f"{where} appears twice")
        digest = _entry_digest(entry, where, name)
        if digest in digests:
            raise AccessConfigError(f"{where} has the same token as an earlier entry")
        roles = entry.get("roles")
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
            raise AccessConfigError(f"{where} needs 'roles', a non-empty list of {', '.join(Role)}")
        bad = [r for r in roles if r not in Role._value2member_map_]
        if bad:
            raise AccessConfigError(f"{where} has unknown roles {bad}; known: {', '.join(Role)}")
        names.add(name)
        digests.add(digest)
        principals.append(Principal(name, frozenset(Role(r) for r in roles), digest))
    return tuple(principals)


def _entry_digest(entry: Mapping[str, Any], where: str, name: str) -> bytes:
    hexdigest, plain = entry.get("sha256"), entry.get("token")
    if (hexdigest is None) == (plain is None):
        raise AccessConfigError(f"{where} needs exactly one of 'sha256' (recommended) or 'token'")
    if hexdigest is not None:
        if not isinstance(hexdigest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", hexdigest):
            raise AccessConfigError(f"{where}: 'sha256' must be 64 hex digits (sha256 of the token)")
        return bytes.fromhex(hexdigest)
    if not isinstance(plain, str) or len(plain) < MIN_PLAINTEXT_TOKEN_CHARS or plain != plain.strip():
        raise AccessConfigError(
            f"{where}: 'token' must be at least {MIN_PLAINTEXT_TOKEN_CHARS} characters, no outer spaces"
        )
    logger.warning("access file entry %r holds a plaintext token; store its sha256 instead", name)
    return hashlib.sha256(plain.encode("utf-8")).digest()


def _kind(path: pathlib.Path) -> str:
    return "TOML" if path.suffix.lower() == ".toml" else "JSON"


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> tuple[str | None, str]:
    """(the token of the first ``authorization`` entry, "") or (None, what is wrong with the metadata)."""
    value = next((v for k, v in metadata or () if k.lower() == "authorization"), None)
    if value is None:
        return None, "missing bearer token: send 'authorization: Bearer <token>' metadata"
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None, "malformed authorization metadata: expected 'Bearer <token>'"
    return token, ""


class AccessInterceptor(grpc.ServerInterceptor):
    """Checks every call against an AccessPolicy; a refused call runs a handler that aborts.

    Register it after MetricsInterceptor (``interceptors=[metrics, access]``): the metrics one is then the
    outer one, so refused calls are counted with their UNAUTHENTICATED / PERMISSION_DENIED code.
    """

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # UNIMPLEMENTED, before any check: reveals nothing the proto does not
        method = handler_call_details.method
        denial = self.policy.check(method, handler_call_details.invocation_metadata)
        if denial is None:
            return handler
        if denial.code == grpc.StatusCode.PERMISSION_DENIED:
            logger.warning("permission denied: %s", denial.message, extra={"method": method})
        else:
            logger.debug("unauthenticated call to %s: %s", method, denial.message)
        return _denying(handler, denial)


def _denying(handler: grpc.RpcMethodHandler, denial: Denial) -> grpc.RpcMethodHandler:
    """The same kind of handler, not parsing the request, aborting with the denial."""

    def deny(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(denial.code, denial.message)

    h: Any = handler  # the concrete RpcMethodHandler is a namedtuple
    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        if getattr(h, kind) is not None:
            return h._replace(**{kind: deny, "request_deserializer": None})
    return handler


# ---- TLS -----------------------------------------------------------------------------------------


def server_credentials(
    cert_file: pathlib.Path | None, key_file: pathlib.Path | None, client_ca_file: pathlib.Path | None
) -> grpc.ServerCredentials | None:
    """TLS credentials from PEM files (None: plaintext); a client CA turns on mutual TLS."""
    if cert_file is None and key_file is None:
        if client_ca_file is not None:
            raise AccessConfigError("a TLS client CA needs the server's TLS certificate and key too")
        return None
    if cert_file is None or key_file is None:
        raise AccessConfigError("TLS needs both a certificate file and a key file")
    cert, key = _read(cert_file, "TLS certificate"), _read(key_file, "TLS key")
    client_ca = _read(client_ca_file, "TLS client CA") if client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _read(path: pathlib.Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AccessConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


# ---- Redis URLs ------------------------------------------------------------------------------------


def redis_url_with_tls(
    url: str,
    ca_file: pathlib.Path | None = None,
    cert_file: pathlib.Path | None = None,
    key_file: pathlib.Path | None = None,
) -> str:
    """The URL with the TLS files as query options redis-py reads (``ssl_ca_certs``, ...); rediss only."""
    options = {"ssl_ca_certs": ca_file, "ssl_certfile": cert_file, "ssl_keyfile": key_file}
    given = {k: str(v) for k, v in options.items() if v is not None}
    if not given:
        return url
    parts = urlsplit(url)
    if not parts.scheme.lower().startswith("rediss"):
        raise AccessConfigError(f"Redis TLS files need a rediss:// URL, not {parts.scheme}://")
    if (cert_file is None) != (key_file is None):
        raise AccessConfigError("a Redis client certificate needs its key, and a key its certificate")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in given]
    return urlunsplit(parts._replace(query=urlencode([*query, *given.items()], quote_via=quote)))


def mask_url(url: str) -> str:
    """The URL for logs: the password (in user info or a ``password`` option) replaced by ***."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        userinfo = f"{user}:***" if colon else user  # a lone user info is a user name (redis-py)
    query = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query, True)]
    netloc = f"{userinfo}@{hosts}" if at else hosts
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*/")))


# ---- python -m allocator.access ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``new NAME ROLE...``: a fresh token (stdout, once) and the TOML entry holding its digest only."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] != "new" or any(r not in Role._value2member_map_ for r in args[2:]):
        roles = ", ".join(Role)
        print(f"usage: python -m allocator.access new NAME ROLE... (roles: {roles})", file=sys.stderr)
        return 2
    token = secrets.token_urlsafe(32)
    roles = ", ".join(f'"{r}"' for r in args[2:])
    print(f"token (give it to the client, it is not stored): {token}")
    print(f'\n[[tokens]]\nname = "{args[1]}"\nsha256 = "{token_digest(token)}"\nroles = [{roles}]')
    return 0


if __name__ == "__main__":
    sys.exit(main())

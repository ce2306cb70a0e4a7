"""Walking paginated list responses: every list RPC takes page_token and returns next_page_token."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

__all__ = ["PagedRequest", "iter_pages"]

ReqT = TypeVar("ReqT", bound="PagedRequest")
RespT = TypeVar("RespT")
ItemT = TypeVar("ItemT")


class PagedRequest(Protocol):
    """What every list request has: a page token, and protobuf's CopyFrom."""

    page_token: str

    def CopyFrom(self, other: Any, /) -> None: ...


def iter_pages(
    fetch: Callable[[ReqT], RespT],
    request: ReqT,
    items: Callable[[RespT], Iterable[ItemT]],
) -> Iterator[ItemT]:
    """Yield every item of a paginated list, fetching page after page until the token is empty.

    ``fetch`` is a client method (e.g. ``client.list_redemptions``), ``request`` the first page's
    request (its ``page_token`` is used as the start), ``items`` picks the items of a response.
    The caller's request is not modified. A server that hands back a token twice is a bug that
    would loop forever, so it raises ``RuntimeError``.
    """
    page = type(request)()
    page.CopyFrom(request)
    seen: set[str] = set()
    while True:
        response = fetch(page)
        yield from items(response)
        token: str = getattr(response, "next_page_token", "")
        if not token:
            return
        if token in seen:
            raise RuntimeError(f"server repeated page token {token!r}")
        seen.add(token)
        page.page_token = token

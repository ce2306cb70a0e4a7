"""What "the same content" means for a retried write: the request's digest without its request id."""

from __future__ import annotations

import hashlib

from google.protobuf.message import Message


def content_digest(request: Message) -> str:
    """sha256 of the request without its request_id: what "the same content" means for a retry."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("request_id")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()

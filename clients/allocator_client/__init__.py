"""Typed client library of the traffic allocation service.

>>> from allocator_client import AllocatorClient, AllocatorError
>>> with AllocatorClient("127.0.0.1:50051") as client:
...     rules = client.get_rules()

Imports only gRPC and protobuf, never OR-Tools, numpy or Redis, so any service can depend on it.
"""

from allocator_client.client import MAX_MESSAGE_BYTES, SERVICE_NAME, AllocatorClient, iter_pages
from allocator_client.errors import AllocatorError

__all__ = ["MAX_MESSAGE_BYTES", "SERVICE_NAME", "AllocatorClient", "AllocatorError", "iter_pages"]

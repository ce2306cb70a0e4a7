"""Redis clients from a URL: a standalone Redis or a Redis Cluster, chosen by the URL's scheme.

- ``redis://[[user]:password@]host:port[/db]`` (``rediss://`` for TLS): one Redis, ``redis.Redis``;
- ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (``rediss+cluster://`` for TLS): a Redis
  Cluster, ``redis.cluster.RedisCluster``. The nodes listed are only seeds: the client discovers the
  others and follows MOVED/ASK redirections. Cluster mode has no databases (a path other than ``/0`` is
  refused).

Every key layout in allocator/store/keys.py is cluster-safe: keys that one script or MULTI touches share a
hash tag, so they map to one slot (tests/unit/test_cluster_slots.py pins that).
"""

from __future__ import annotations

from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import ClusterNode, RedisCluster

# What the stores accept: both clients have the same data commands, scripts and pipelines.
RedisClient: TypeAlias = redis.Redis | RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in CLUSTER_SCHEMES


def connect(
    url: str,
    *,
    socket_timeout: float | None = 5.0,
    socket_connect_timeout: float | None = 2.0,
    health_check_interval: int = 10,
) -> RedisClient:
    """A client for `url`: RedisCluster for a ``redis+cluster://`` URL, else redis.Redis.

    health_check_interval applies to a standalone client only (RedisCluster does not take it; a cluster
    client checks a node's connection when it fails and re-reads the slot map on redirections).
    """
    if not is_cluster_url(url):
        return redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            health_check_interval=health_check_interval,
        )
    first, seeds = _cluster_url(url)
    return RedisCluster.from_url(
        first,
        startup_nodes=seeds,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
    )


def ping(client: RedisClient) -> bool:
    """PING the Redis; in a cluster every primary (each holds part of the data), all must answer."""
    if isinstance(client, RedisCluster):
        return bool(client.ping(target_nodes=RedisCluster.PRIMARIES))
    return bool(client.ping())


def _cluster_url(url: str) -> tuple[str, list[ClusterNode]]:
    """(a redis:// URL of the first seed with the credentials and options, the other seeds)."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES[parts.scheme.lower()]
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    hosts = [h.strip() for h in hostlist.split(",") if h.strip()]
    if not hosts:
        raise ValueError(f"no cluster node in {_redact(url)}")
    seeds: list[ClusterNode] = []
    for h in hosts[1:]:
        probe = urlsplit(f"//{h}")
        if probe.hostname is None:
            raise ValueError(f"bad cluster node {h!r} in {_redact(url)}")
        seeds.append(ClusterNode(probe.hostname, probe.port or 6379))
    netloc = f"{userinfo}@{hosts[0]}" if userinfo else hosts[0]
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment)), seeds


def _redact(url: str) -> str:
    parts = urlsplit(url)
    _, at, hosts = parts.netloc.rpartition("@")
    return urlunsplit((parts.scheme, ("***@" if at else "") + hosts, parts.path, "", ""))

"""The shared-store scenarios: a proxy whose client limits are counted in a real Redis.

The load generator's key (`bench-client`) belongs to a client of this proxy's key store whose
limits are high enough never to refuse a request: what is measured is the cost of counting (one
store round trip before the upstream call and one after it), not of refusing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager

from bench.processes import proxy_server
from testbed.redis_server import RedisServer
from testbed.server import RunningServer

CLIENT_KEY = "bench-client"  # what bench.load sends in Authorization
LIMITS = {"rpm": 100_000, "max_concurrent": 100_000, "tpm": 1_000_000_000}


@contextmanager
def limited_proxy(upstream_url: str, workers: int) -> Iterator[RunningServer]:
    store = {"bench": {"keys": [hashlib.sha256(CLIENT_KEY.encode()).hexdigest()], **LIMITS}}
    with (
        RedisServer() as redis,
        proxy_server(
            upstream_url,
            workers,
            extra={"AIPROXY_CLIENT_KEYS": json.dumps(store), "AIPROXY_REDIS_URL": redis.url},
        ) as server,
    ):
        yield server

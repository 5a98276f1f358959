"""The limits scenarios: a proxy with a client key store whose client's limits are counted in the
process (`limits`), or in a real Redis shared by every process (`store`).

The load generator's key (`bench-client`) belongs to a client whose limits are high enough never
to refuse a request: what is measured is the cost of counting, not of refusing. Comparing the two
proxies, which differ only by AIPROXY_REDIS_URL, gives what the shared store adds.

The cache-hit point's proxies (`cached_proxy`) are the same with the answer cache on for the
client: every request after the first is answered from the cache, in the process (`cache`) or in
Redis (`cache-store`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager

from bench.processes import proxy_server
from testbed.redis_server import RedisServer
from testbed.server import RunningServer

CLIENT_KEY = "bench-client"  # what bench.load sends in Authorization
LIMITS = {"rpm": 100_000, "max_concurrent": 100_000, "tpm": 1_000_000_000}


CACHE = {"ttl_s": 3600, "max_answer_bytes": 1048576}


def key_only() -> dict[str, str]:
    """Settings of a key store holding the load's key and nothing else (the key-1 point). A key
    always has limits (the defaults when none are set): these are too high to refuse, and in
    fields the first round's store knows too."""
    entry = {
        "keys": [hashlib.sha256(CLIENT_KEY.encode()).hexdigest()],
        "rpm": 100_000,
        "max_concurrent": 100_000,
    }
    return {"AIPROXY_CLIENT_KEYS": json.dumps({"bench": entry})}


@contextmanager
def cached_proxy(upstream_url: str, workers: int, *, shared: bool) -> Iterator[RunningServer]:
    """A proxy whose client has the answer cache on, its entries in a Redis of its own when
    `shared`, else in each process: the same chat sent again is a hit (the cache-hit point)."""
    keys = {"bench": {"keys": [hashlib.sha256(CLIENT_KEY.encode()).hexdigest()], **LIMITS, "cache": CACHE}}
    with contextlib.ExitStack() as stack:
        extra = {"AIPROXY_CLIENT_KEYS": json.dumps(keys)}
        if shared:
            extra["AIPROXY_REDIS_URL"] = stack.enter_context(RedisServer()).url
        yield stack.enter_context(proxy_server(upstream_url, workers, extra=extra))


@contextmanager
def limited_proxy(upstream_url: str, workers: int, *, shared: bool) -> Iterator[RunningServer]:
    """A proxy counting the client's limits in a Redis of its own when `shared`, else in-process."""
    keys = {"bench": {"keys": [hashlib.sha256(CLIENT_KEY.encode()).hexdigest()], **LIMITS}}
    with contextlib.ExitStack() as stack:
        extra = {"AIPROXY_CLIENT_KEYS": json.dumps(keys)}
        if shared:
            extra["AIPROXY_REDIS_URL"] = stack.enter_context(RedisServer()).url
        yield stack.enter_context(proxy_server(upstream_url, workers, extra=extra))

"""Answers kept in the shared store (Redis/Valkey), for every process and task: `SharedAnswers`.

A read is one GET on a connection held open for the request path (`connections.OpenConnections`,
through a one-line script: the pool's own checkout costs as much as the round trip), sent with the
request's admission when the limits are in the same store (`along`: a hit waits for one round
trip, not two); a write, made
once the answer has gone out, is one SET with an expiry through the client. Every value has a time
to live, so the store's eviction (LRU among the keys that expire, when it is full) and the TTL
bound its memory. A store that fails is a miss, never an error: after a failure the store is left
alone for `pause_s` seconds, so a store that is down costs no request its timeout.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from service.store.client import STORE_ERRORS
from service.store.connections import Along, OpenConnections
from service.store.scripts import GET

log = logging.getLogger(__name__)

PAUSE_SECONDS = 5.0


class SharedAnswers:
    def __init__(self, store: redis.Redis, *, pause_s: float = PAUSE_SECONDS) -> None:
        self.store = store
        self._calls = OpenConnections(store)
        self._get = store.register_script(GET)
        self._pause_s = pause_s
        self._down_until = 0.0
        self._lock = threading.Lock()

    def along(self, key: str) -> Along | None:
        """The read of `key`, to send along with the request's admission (one round trip for
        both); `get(key, along)` takes its reply, or reads on its own when it has none."""
        return None if self._resting() else Along(self.store, self._get, [key], [])

    def get(self, key: str, along: Along | None = None) -> bytes | None:
        if along is not None and along.answered:
            return along.reply if isinstance(along.reply, bytes) else None
        if self._resting():
            return None
        try:
            value = self._calls.run(self._get, [key], [])
        except STORE_ERRORS as error:
            self._failed("read", error)
            return None
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes, ttl_s: int) -> None:
        if ttl_s <= 0 or self._resting():
            return
        try:
            self.store.set(key, value, ex=ttl_s)
        except STORE_ERRORS as error:
            self._failed("write", error)

    def _resting(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, what: str, error: Exception) -> None:
        with self._lock:
            first = not self._resting()
            self._down_until = time.monotonic() + self._pause_s
        if first:  # one line per outage, not one per request
            log.warning(
                "The answer cache could not %s the shared store (%s); answering without it for %g s",
                what,
                type(error).__name__,
                self._pause_s,
            )

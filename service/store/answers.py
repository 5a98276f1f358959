"""Answers kept for a while, by key: where the answer cache (`service.cache`) puts its entries.

`AnswerStore` is what the cache needs of a store: read a value, or write one with a time to
live. `LocalAnswers` keeps the values in this process, for a server without a shared store (one
process, or each process alone): bounded in bytes, the least recently used evicted first, an
expired value dropped when it is read. `service.store.shared_answers.SharedAnswers` keeps them in
Redis/Valkey, for every process and task. Neither names a key nor decides what is kept.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from service.store.connections import Along  # imports redis: only a shared store's

LOCAL_MAX_BYTES = 64 * 1024 * 1024  # a process's whole answer cache, without a shared store


class AnswerStore(Protocol):
    def along(self, key: str) -> Along | None:
        """The read of `key` as a call to send with the request's admission, or None (a store of
        this process reads without a round trip)."""
        ...

    def get(self, key: str, along: Along | None = None) -> bytes | None:
        """The value under `key`, or None (never stored, expired, evicted, or the store failed);
        `along`'s reply when it came with the admission."""
        ...

    def put(self, key: str, value: bytes, ttl_s: int) -> None:
        """Keep `value` under `key` for `ttl_s` seconds; a store that fails keeps nothing, silently."""
        ...


class LocalAnswers:
    """Values in this process's memory, at most `max_bytes` of them, least recently used out first."""

    def __init__(self, max_bytes: int = LOCAL_MAX_BYTES, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._values: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (expiry, value)
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """The bytes of the values held now."""
        return self._bytes

    def along(self, key: str) -> None:
        return None

    def get(self, key: str, along: Along | None = None) -> bytes | None:
        with self._lock:
            held = self._values.get(key)
            if held is None:
                return None
            expiry, value = held
            if expiry <= self._clock():
                self._drop(key)
                return None
            self._values.move_to_end(key)
            return value

    def put(self, key: str, value: bytes, ttl_s: int) -> None:
        if ttl_s <= 0 or len(value) > self.max_bytes:
            return
        with self._lock:
            if key in self._values:
                self._drop(key)
            self._values[key] = (self._clock() + ttl_s, value)
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._values)))

    def _drop(self, key: str) -> None:
        _, value = self._values.pop(key)
        self._bytes -= len(value)

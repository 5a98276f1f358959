"""Deployments of a model group that failed, passed over for a while.

A deployment that answers 429 or 5xx, times out or cannot be reached is skipped by its model
group for the Retry-After it gave, else AIPROXY_COOLDOWN_SECONDS, so every request does not pay
for its failure first. `Cooldowns` keeps this in the process; `SharedCooldowns` also writes it to
the shared limits store (one key per deployment, expiring with the cooldown) and reads the store's
back every second in the background, so all processes and tasks pass over a failing deployment
together, and no request waits on the store for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import redis

from service.shared_limits import STORE_ERRORS

log = logging.getLogger(__name__)

MAX_COOLDOWN = 600.0  # seconds: a provider asking for longer is tried again after this anyway
SYNC_EVERY = 1.0  # seconds between two reads of the shared store's cooldowns


class Cooldowns:
    def __init__(self, default: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.default = default
        self.clock = clock
        self._until: dict[str, float] = {}

    def cooling(self, name: str) -> bool:
        until = self._until.get(name)
        return until is not None and self.clock() < until

    def start(self, name: str, retry_after: float | None = None) -> float:
        """Pass over `name` for `retry_after` seconds (else the default); the seconds chosen."""
        seconds = min(MAX_COOLDOWN, self.default if retry_after is None else retry_after)
        if seconds > 0:
            self._until[name] = self.clock() + seconds
            log.warning("Deployment %s passed over for %.0f s", name, seconds, extra={"deployment": name})
        return seconds


class SharedCooldowns(Cooldowns):
    """Cooldowns written to, and read back from, the shared store."""

    def __init__(self, store: redis.Redis, names: Iterable[str], default: float, **options) -> None:
        super().__init__(default, **options)
        self.store = store
        self.names = sorted(set(names))
        if self.names:
            # A daemon thread (a greenlet in the server): the store is never read on a request's path.
            threading.Thread(target=self._read_forever, name="cooldowns", daemon=True).start()

    @staticmethod
    def key(name: str) -> str:
        return f"aiproxy:{{cooldown:{name}}}"

    def start(self, name: str, retry_after: float | None = None) -> float:
        seconds = super().start(name, retry_after)
        if seconds > 0:
            try:
                self.store.set(self.key(name), "1", px=int(seconds * 1000))
            except STORE_ERRORS as error:
                log.debug("Could not share the cooldown of %s (%s)", name, type(error).__name__)
        return seconds

    def _read_forever(self) -> None:
        while True:
            self.read()
            time.sleep(SYNC_EVERY)

    def read(self) -> None:
        """Take over the cooldowns other processes wrote (one pipelined call)."""
        pipeline = self.store.pipeline(transaction=False)
        for name in self.names:
            pipeline.pttl(self.key(name))
        try:
            remaining = pipeline.execute()
        except STORE_ERRORS as error:
            log.debug("Could not read the shared cooldowns (%s)", type(error).__name__)
            return
        now = self.clock()
        for name, milliseconds in zip(self.names, remaining, strict=True):
            if isinstance(milliseconds, int) and milliseconds > 0:
                self._until[name] = max(self._until.get(name, 0.0), now + milliseconds / 1000)

"""Cooldowns of model groups' deployments (`service.gateway.cooldowns`) shared by every process and task.

A cooldown is also written to the shared store (`service.store`: one key per deployment,
expiring with the cooldown), and the store's are read back every second in the background, so
all processes pass over a failing deployment together and no request waits on the store for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from service.gateway.cooldowns import Cooldowns
from service.store.client import STORE_ERRORS, Store

log = logging.getLogger(__name__)

SYNC_EVERY = 1.0  # seconds between two reads of the shared store's cooldowns


class SharedCooldowns(Cooldowns):
    """Cooldowns written to, and read back from, the shared store."""

    def __init__(
        self,
        store: Store,
        names: Iterable[str],
        default: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(default, clock)
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

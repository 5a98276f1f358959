"""Deployments of a model group that failed, passed over for a while.

A deployment that answers 429 or 5xx, times out or cannot be reached is skipped by its model
group for the Retry-After it gave, else AIPROXY_COOLDOWN_SECONDS, so every request does not pay
for its failure first. `Cooldowns` keeps this in the process; with a shared store,
`service.gateway.shared_cooldowns` shares it with every process and task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

MAX_COOLDOWN = 600.0  # seconds: a provider asking for longer is tried again after this anyway


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

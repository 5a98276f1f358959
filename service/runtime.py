"""What the running app holds: its settings, its secrets and the clients every request shares.

One `Runtime` is built per app (`service.app.create_app`) and handed to whatever needs it: the
request pipeline, and each route blueprint when it is made. Nothing is looked up by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.cache.entries import AnswerCache
from service.config.prices import PriceTable
from service.config.secrets import SecretStore
from service.config.settings import Settings
from service.gateway.routing import Router
from service.governance.auth import ClientKeys
from service.governance.limits import Limiter
from service.safety.gate import SafetyGate


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    secrets: SecretStore
    keys: ClientKeys  # the client key store, re-read when its secret changes
    limiter: Limiter  # client limits and budgets
    router: Router  # models to providers
    prices: PriceTable  # what calls cost (usage records, budgets)
    safety: SafetyGate  # the clients' safety policies, applied (service.safety)
    answers: AnswerCache  # the answer cache (service.cache), for the clients that use it

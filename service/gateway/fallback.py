"""Trying a model's deployments in order: the next one when one fails in a way another may not.

A deployment is passed over after a 429, a 5xx, a timeout, an unreachable provider or one that
refused the proxy's own credentials (`ProviderError.worth_another_deployment`); never after a
refusal of the request itself (another 4xx), which every deployment would refuse alike. A stream
falls back only while opening: once its first byte is on its way, it is that deployment's.

In a model group, a deployment that failed so is then skipped for a while (`service.gateway.cooldowns`);
only the last deployment tried retries its own failures (the others give way to the next at
once); and no deployment is tried once the request has taken the router's overall timeout.

When every deployment failed, the answer has the last failure's status and a message naming each
deployment's failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from service.core import request_state
from service.core.errors import ProviderError, ProviderThrottled, RequestRejected
from service.gateway.routing import Deployment, Router

log = logging.getLogger(__name__)

T = TypeVar("T")


def first_answer(
    router: Router, deployments: Sequence[Deployment], attempt: Callable[[Deployment, bool], T]
) -> tuple[Deployment, T]:
    """The first deployment whose `attempt(deployment, last)` succeeds, and what it returned;
    `last` says whether it is the final one tried (it may retry its own failures)."""
    deployments = priced_for_budget(deployments)
    group = len(deployments) > 1
    # Those cooling down go last, not nowhere: when all are, the group is still tried.
    ready = [d for d in deployments if not (group and router.cooldowns.cooling(d.name))]
    order = ready + [d for d in deployments if d not in ready]
    started = time.monotonic()
    failures: list[tuple[Deployment, ProviderError]] = []
    for position, deployment in enumerate(order):
        last = position == len(order) - 1
        try:
            return deployment, attempt(deployment, last)
        except ProviderError as error:
            failures.append((deployment, error))
            if not error.worth_another_deployment:
                break
            if group:
                router.cooldowns.start(deployment.name, _retry_after(error))
            if last or time.monotonic() - started >= router.overall_timeout:
                break
            log.warning(
                "Deployment %s failed (%s); trying %s",
                deployment.name,
                error.kind,
                order[position + 1].name,
                extra={"deployment": deployment.name, "error": error.kind},
            )
    if len(failures) == 1:
        raise failures[0][1]
    raise _all_failed(failures)


def _retry_after(error: ProviderError) -> float | None:
    if isinstance(error, ProviderThrottled) and error.retry_after is not None:
        return error.retry_after
    value = error.headers.get("Retry-After")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def priced_for_budget(deployments: Sequence[Deployment]) -> Sequence[Deployment]:
    """The deployments the current request may use: all, but for a client with a budget only those
    whose model has a price (service.config.prices), so a budget is never bypassed silently."""
    state = request_state.current()
    admission = state.admission if state is not None else None
    if state is None or admission is None or not admission.limits.has_budget or state.prices is None:
        return deployments
    prices = state.prices
    priced = [d for d in deployments if prices.price(d.name, d.routed_name, d.model)]
    if not priced:
        raise RequestRejected(
            f"Model {deployments[0].routed_name!r} has no price, and client {admission.client!r} has a "
            "budget: it may use only models with a price (the proxy's operators can add one with "
            "AIPROXY_PRICES).",
            param="model",
            code="model_not_priced",
        )
    return priced


def _all_failed(failures: list[tuple[Deployment, ProviderError]]) -> ProviderError:
    last = failures[-1][1]
    listed = "; ".join(f"{deployment.name}: {error.message}" for deployment, error in failures)
    return ProviderError(
        f"Every deployment of the model failed: {listed}",
        status=last.status,
        code=last.code,
        headers=last.headers,
        provider=last.provider,
    )

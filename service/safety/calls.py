"""Model calls a check makes, through the proxy's own routing (aliases, model groups, fallbacks,
cooldowns), as the routes make theirs: only a group's deployments may answer, and each call writes
its usage record (with `purpose: "safety"`, set by the runner) charged to the requesting client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from service.cache.entries import deployments_key
from service.core.errors import ProxyError
from service.core.responses import ClientResponse, json_bytes, unsent
from service.gateway.fallback import first_answer
from service.gateway.providers import RelayRequest
from service.gateway.routing import Deployment
from service.safety.check import CheckFailed, Services


def relayed(
    services: Services,
    model: str,
    path: str,
    body: dict[str, Any],
    *,
    kind: str,
    keep: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """The JSON answer of an OpenAI-compatible `path` (e.g. `/moderations`) for `body`, from the
    answer cache when the client's entry turns it on and `keep` (what a `kind` of check can use)
    says it may be kept; None: not cached at all."""
    deployments = _deployments(services, model)

    def attempt(deployment: Deployment, last: bool) -> bytes:
        sent = {**body, "model": deployment.model}
        request = RelayRequest(
            path, deployment.model, body=sent, raw=json_bytes(sent), retries=None if last else 0
        )
        return _whole(deployment.provider.relay(request))

    def ask() -> bytes:
        try:
            return first_answer(services.router, deployments, attempt)[1]
        except ProxyError as error:
            raise CheckFailed(f"{model}: {error.kind} ({error.status})") from None

    def parsed(content: bytes) -> dict[str, Any]:
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            raise CheckFailed(f"{model}: the answer is not a JSON object")
        return data

    if keep is None:
        return parsed(ask())
    return parsed(
        _through_cache(services, kind, deployments, body, ask, lambda content: keep(parsed(content)))
    )


def completion(
    services: Services,
    model: str,
    body: dict[str, Any],
    *,
    kind: str,
    keep: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    """A chat completion the proxy composed (`Provider.complete`), by `model`'s deployments, from
    the answer cache when the client's entry turns it on and `keep` says it may be kept."""
    deployments = _deployments(services, model)

    def attempt(deployment: Deployment, last: bool) -> dict[str, Any]:
        return deployment.provider.complete({**body, "model": deployment.model}, retries=None if last else 0)

    def ask() -> bytes:
        try:
            return json_bytes(first_answer(services.router, deployments, attempt)[1])
        except ProxyError as error:
            raise CheckFailed(f"{model}: {error.kind} ({error.status})") from None

    content = _through_cache(services, kind, deployments, body, ask, lambda answer: keep(json.loads(answer)))
    data = json.loads(content)
    return data if isinstance(data, dict) else {}


def _deployments(services: Services, model: str) -> list[Deployment]:
    try:
        return services.router.deployments(model)
    except ProxyError as error:
        raise CheckFailed(f"{model}: {error.kind} ({error.status})") from None


class _NotKept(Exception):
    """An answer the check can use but the cache must not keep (no verdict in it)."""

    def __init__(self, content: bytes) -> None:
        self.content = content


def _through_cache(
    services: Services,
    kind: str,
    deployments: list[Deployment],
    body: dict[str, Any],
    ask: Callable[[], bytes],
    keep: Callable[[bytes], bool],
) -> bytes:
    """`ask()`'s answer, or the one the cache kept for the same check of the same text by the same
    deployments (a check's answer depends only on them). Only an answer `keep` accepts is kept: a
    failure (`ask` raising) or an answer without a verdict is asked again next time."""
    if services.cache is None:
        return ask()

    def kept_only_when_usable() -> bytes:
        content = ask()
        if not keep(content):
            raise _NotKept(content)  # through the cache without being kept
        return content

    model = deployments_key(deployment.name for deployment in deployments)
    try:
        return services.cache(f"safety:{kind}", model, body, kept_only_when_usable)
    except _NotKept as unusable:
        return unusable.content


def _whole(answer: ClientResponse) -> bytes:
    """The body of a relayed whole answer, its usage recorded (closing it runs its steps)."""
    chunks = answer({}, unsent)
    try:
        content = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if answer.status >= 400:
        raise CheckFailed(f"the provider answered HTTP {answer.status}")
    return content

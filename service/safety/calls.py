"""Model calls a check makes, through the proxy's own routing (aliases, model groups, fallbacks,
cooldowns), as the routes make theirs: only a group's deployments may answer, and each call writes
its usage record (with `purpose: "safety"`, set by the runner) charged to the requesting client.
"""

from __future__ import annotations

import json
from typing import Any

from service.core.errors import ProxyError
from service.core.responses import ClientResponse, json_bytes, unsent
from service.gateway.fallback import first_answer
from service.gateway.providers import RelayRequest
from service.gateway.routing import Deployment
from service.safety.check import CheckFailed, Services


def relayed(services: Services, model: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer of an OpenAI-compatible `path` (e.g. `/moderations`) for `body`."""

    def attempt(deployment: Deployment, last: bool) -> bytes:
        sent = {**body, "model": deployment.model}
        request = RelayRequest(
            path, deployment.model, body=sent, raw=json_bytes(sent), retries=None if last else 0
        )
        return _whole(deployment.provider.relay(request))

    try:
        _, content = first_answer(services.router, services.router.deployments(model), attempt)
    except ProxyError as error:
        raise CheckFailed(f"{model}: {error.kind} ({error.status})") from None
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise CheckFailed(f"{model}: the answer is not a JSON object")
    return data


def completion(services: Services, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """A chat completion the proxy composed (`Provider.complete`), by `model`'s deployments."""

    def attempt(deployment: Deployment, last: bool) -> dict[str, Any]:
        return deployment.provider.complete({**body, "model": deployment.model}, retries=None if last else 0)

    try:
        _, data = first_answer(services.router, services.router.deployments(model), attempt)
    except ProxyError as error:
        raise CheckFailed(f"{model}: {error.kind} ({error.status})") from None
    return data


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

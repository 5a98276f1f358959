"""The OpenAI-compatible POST routes: `/v1/chat/completions`, `/v1/completions`, `/v1/responses`,
`/v1/embeddings` and `/v1/moderations`.

They are served by the request pipeline outside Flask (`service.core.responses.JsonRoute`), which has
already authenticated the client, read and parsed the body and admitted the request: they are the
proxy's hot path and need nothing of Flask's routing, Request and Response objects or hooks.

Each route resolves the body's `model` to its deployments (`service.gateway.routing`), relays the
request to the first that answers (`service.gateway.fallback`) and names it in `x-aiproxy-deployment`.
Bodies go to the provider as the client sent them, but for `model` when routing renamed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from service.core.responses import ClientResponse, JsonRoute, json_bytes
from service.edge.bodies import BYTES_PER_TOKEN
from service.edge.forwarding import forwarded_headers
from service.gateway.fallback import first_answer
from service.gateway.providers import RelayRequest
from service.gateway.routing import Deployment, Router

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

# The OpenAI-compatible POST routes relayed as they are (chat completions also route to Bedrock).
PATHS = ("/chat/completions", "/embeddings", "/responses", "/completions", "/moderations")
STREAMABLE = ("/chat/completions", "/completions", "/responses")
NO_OUTPUT = ("/embeddings", "/moderations")
DEPLOYMENT_HEADER = "x-aiproxy-deployment"


class RelayRoute(JsonRoute):
    def __init__(self, path: str, router: Router) -> None:
        self.path = path
        self.router = router
        self.generates = path not in NO_OUTPUT

    def __call__(self, body: dict[str, Any], raw: bytes, environ: WSGIEnvironment) -> ClientResponse:
        model = body.get("model")
        if isinstance(model, str) and model:
            deployments = self.router.deployments(model)
        else:
            # Relayed as sent (absent, blank, not text): the upstream says what is wrong.
            deployments = [Deployment(self.router.default, cast(str, model))]
        stream = body.get("stream") is True and self.path in STREAMABLE
        headers = forwarded_headers(environ)
        query = environ.get("QUERY_STRING", "")

        def attempt(deployment: Deployment, last: bool) -> ClientResponse:
            sent, sent_raw = body, raw
            if deployment.model != model:  # a routing prefix or an alias: the provider's own name
                sent = {**body, "model": deployment.model}
                sent_raw = json_bytes(sent)
            request = RelayRequest(
                self.path,
                deployment.model,
                body=sent,
                raw=sent_raw,
                stream=stream,
                query=query,
                headers=headers,
                prompt_estimate=len(raw) // BYTES_PER_TOKEN,
                retries=None if last else 0,
            )
            return deployment.provider.relay(request)

        deployment, answer = first_answer(self.router, deployments, attempt)
        answer.headers.append((DEPLOYMENT_HEADER, deployment.name))
        return answer


def relay_routes(router: Router) -> Mapping[str, JsonRoute]:
    return {"/v1" + path: RelayRoute(path, router) for path in PATHS}

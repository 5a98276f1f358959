"""The OpenAI-compatible POST routes: `/v1/chat/completions`, `/v1/completions`, `/v1/responses`,
`/v1/embeddings` and `/v1/moderations`.

They are served by the request pipeline outside Flask (`service.core.responses.JsonRoute`), which has
already authenticated the client, read and parsed the body and admitted the request: they are the
proxy's hot path and need nothing of Flask's routing, Request and Response objects or hooks.

Each route resolves the body's `model` to its deployments (`service.gateway.routing`), relays the
request to the first that answers (`service.gateway.fallback`) and names it in `x-aiproxy-deployment`.
Bodies go to the provider as the client sent them, but for `model` when routing renamed it, and
for personal data when the client's safety policy redacts it (on every route). A client with a
safety policy (`service.safety`) has its chat, completions and responses checked: the input before
any provider is asked, the answer before the client gets it (a stream segment by segment).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from service.core import request_state
from service.core.responses import ClientResponse, JsonRoute, json_bytes
from service.edge.bodies import BYTES_PER_TOKEN
from service.edge.forwarding import forwarded_headers
from service.gateway.fallback import first_answer
from service.gateway.providers import RelayRequest
from service.gateway.routing import Deployment, Router
from service.safety.gate import SafetyGate

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

# The OpenAI-compatible POST routes relayed as they are (chat completions also route to Bedrock).
PATHS = ("/chat/completions", "/embeddings", "/responses", "/completions", "/moderations")
STREAMABLE = ("/chat/completions", "/completions", "/responses")
NO_OUTPUT = ("/embeddings", "/moderations")
CHECKED = STREAMABLE  # the routes whose input and output text a client's safety policy checks
DEPLOYMENT_HEADER = "x-aiproxy-deployment"


class RelayRoute(JsonRoute):
    def __init__(self, path: str, router: Router, safety: SafetyGate | None = None) -> None:
        self.path = path
        self.router = router
        self.generates = path not in NO_OUTPUT
        self.safety = safety  # on every route: personal data is redacted from embeddings' input too

    def __call__(self, body: dict[str, Any], raw: bytes, environ: WSGIEnvironment) -> ClientResponse:
        model = body.get("model")
        state = request_state.current()
        if state is not None and isinstance(model, str):
            state.model_asked = model  # usage records: the model asked for, beside the one that served
        if isinstance(model, str) and model:
            deployments = self.router.deployments(model)
        else:
            # Relayed as sent (absent, blank, not text): the upstream says what is wrong.
            deployments = [Deployment(self.router.default, cast(str, model))]
        stream = body.get("stream") is True and self.path in STREAMABLE
        gate = self.safety
        policy = gate.policy() if gate is not None else None
        if gate is not None and policy is not None:
            checked = gate.guard_input(policy, self.path, body)
            if checked is not body:  # personal data redacted: the provider gets the new body
                body, raw = checked, json_bytes(checked)
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
        if gate is not None and policy is not None and self.path in CHECKED:
            guard = gate.guard_stream if stream else gate.guard_answer
            guard(policy, self.path, answer, body)
        return answer


def relay_routes(router: Router, safety: SafetyGate | None = None) -> Mapping[str, JsonRoute]:
    return {"/v1" + path: RelayRoute(path, router, safety) for path in PATHS}

"""What the image, audio, file and batch routes share: the deployment a media request goes to,
its provider call measured, and the answer a client gets.

These routes reach only OpenAI-compatible upstreams: a model served by Amazon Bedrock is a 400
naming the route Bedrock serves. A request goes to one deployment (the first of a model group
with an OpenAI-compatible provider, and for a client with a budget, with a price); an upload is
never sent twice, so it is neither retried nor passed on to another deployment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from service.core import request_state
from service.core.errors import RequestRejected
from service.core.responses import JSON, ClientResponse
from service.edge.forwarding import forwarded_headers
from service.gateway.fallback import priced_for_budget
from service.gateway.providers.http_pool import UpstreamResponse
from service.gateway.providers.openai import OpenAICompatible
from service.gateway.providers.openai.passthrough import answer_headers
from service.gateway.routing import Deployment, Router
from service.governance.usage import ProviderCall, measured

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from service.edge.uploads import MultipartUpload

DEPLOYMENT_HEADER = "x-aiproxy-deployment"
BEDROCK_SERVES = "/v1/chat/completions"


def deployment_for(router: Router, model: Any, path: str) -> Deployment:
    """The deployment that serves `model` on `path` (under /v1); 400 when none can."""
    if isinstance(model, str) and model:
        deployments = router.deployments(model)
    else:
        deployments = [Deployment(router.default, "")]  # the upstream says what is wrong
    usable = [d for d in priced_for_budget(deployments) if isinstance(d.provider, OpenAICompatible)]
    if not usable:
        raise RequestRejected(
            f"Model {model!r} is served by Amazon Bedrock, which serves {BEDROCK_SERVES} only, "
            f"not /v1{path}; use an OpenAI model on this route.",
            param="model",
            code="model_not_supported",
        )
    return usable[0]


def provider_of(deployment: Deployment) -> OpenAICompatible:
    provider = deployment.provider
    assert isinstance(provider, OpenAICompatible)  # deployment_for chose only these
    return provider


def call_for(deployment: Deployment, *, stream: bool = False) -> ProviderCall:
    return ProviderCall(deployment.model or None, deployment=deployment.name, stream=stream)


def upstream_headers(environ: WSGIEnvironment, content_type: str | None = None) -> dict[str, str]:
    headers = forwarded_headers(environ)
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def open_call(
    provider: OpenAICompatible,
    call: ProviderCall,
    method: str,
    path: str,
    environ: WSGIEnvironment,
    *,
    body: bytes | Iterable[bytes] | None = None,
    length: int | None = None,
    content_type: str | None = None,
    query: str | None = None,
) -> tuple[UpstreamResponse, str]:
    """Send the request (measured: a failure finishes `call`'s record); the open answer and key."""
    with measured(call):
        return provider.open(
            method,
            path,
            body=body,
            length=length,
            query=environ.get("QUERY_STRING", "") if query is None else query,
            headers=upstream_headers(environ, content_type),
        )


def send_upload(
    provider: OpenAICompatible,
    call: ProviderCall,
    path: str,
    environ: WSGIEnvironment,
    upload: MultipartUpload,
    replace: Mapping[str, str],
) -> tuple[UpstreamResponse, str]:
    """POST a multipart upload on as it arrives, the fields in `replace` rewritten (the model
    routing named, a redacted prompt); the open answer and key."""
    return open_call(
        provider,
        call,
        "POST",
        path,
        environ,
        body=upload.chunks(replace),
        length=upload.length(replace),
        content_type=upload.upload.content_type,
    )


def renamed_model(deployment: Deployment, asked: Any) -> dict[str, str]:
    """The upload's `model` field to rewrite: the name routing gave the deployment, if it differs."""
    return {"model": deployment.model} if deployment.model and deployment.model != asked else {}


def whole_answer(
    provider: OpenAICompatible, call: ProviderCall, answer: UpstreamResponse, key: str
) -> tuple[bytes, list[tuple[str, str]]]:
    with measured(call):
        data = provider.read_answer(answer, key)
    return data, answer_headers(answer, key)


def relayed(
    status: int,
    data: bytes,
    answer: UpstreamResponse,
    headers: list[tuple[str, str]],
    deployment: Deployment | None = None,
) -> ClientResponse:
    response = ClientResponse.of_bytes(
        status, data, answer.headers.get("content-type", JSON), headers=headers
    )
    if deployment is not None:
        response.headers.append((DEPLOYMENT_HEADER, deployment.name))
    return response


def price_names(deployment: Deployment) -> list[str | None]:
    return [deployment.name, deployment.model]


def client_name() -> str:
    state = request_state.current()
    return state.client if state is not None else request_state.ANONYMOUS


def name_route(template: str) -> None:
    """Usage records and metrics name the route, not a path holding an id."""
    state = request_state.current()
    if state is not None:
        state.route = template


def field(fields: Mapping[str, Any], name: str, default: str = "") -> str:
    value = fields.get(name)
    return value if isinstance(value, str) and value else default

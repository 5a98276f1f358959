"""The providers that answer LLM requests, behind one interface.

- `openai.OpenAICompatible`: any OpenAI-compatible HTTP upstream (OpenAI, Azure OpenAI, vLLM,
  Ollama, ...), relayed byte for byte, over `http_pool`'s pooled connections;
- `bedrock.BedrockProvider`: Amazon Bedrock's Converse API, translated to and from the OpenAI
  chat shapes;
- `vertex`: Google Vertex AI's OpenAI-compatible endpoint is an `OpenAICompatible` whose key is
  an OAuth access token, made from a service account's key and renewed before it expires.

Every provider relays an OpenAI-shaped request to an `ClientResponse` (`relay`), answers a chat the proxy
composed itself (`complete`, used for grading) and raises the `service.core.errors.ProviderError`
tree for every failure, so routes treat them all alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.core.responses import ClientResponse


@dataclass
class RelayRequest:
    """An OpenAI-shaped request to relay: what the route read, with the model the provider knows."""

    path: str  # under /v1, e.g. "/chat/completions"
    model: str | None  # the model as this provider knows it (routing prefixes removed)
    body: dict[str, Any] | None = None  # the JSON body (None for a GET)
    raw: bytes | None = None  # the body's bytes, relayed as they are (with `model` set to the above)
    stream: bool = False
    method: str = "POST"
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # request headers a client may pass on
    api_key: str | None = None  # a provider key the caller brought (legacy routes)
    prompt_estimate: int = 0  # tokens, for a stream cut before usage is known
    retries: int | None = None  # instead of the provider's own (0: a model group's next deployment waits)


class Provider(Protocol):
    name: str  # which provider this is, in usage records and `x-aiproxy-deployment`
    prefix: str  # what a model name starts with to route here (`bedrock/`, `<upstream>/`, or "")
    agent: str  # the kind of provider, as assessment answers report it: `openai` or `bedrock`
    location: str  # where it answers from (a base URL, a Bedrock endpoint): part of the lab's cache key

    def relay(self, request: RelayRequest) -> ClientResponse:
        """Send the request; the answer to relay (a stream when `request.stream`). Raises ProviderError
        before any byte of the answer exists; a stream that fails later ends with an error event."""
        ...

    def complete(
        self, body: dict[str, Any], *, api_key: str | None = None, retries: int | None = None
    ) -> dict[str, Any]:
        """A chat completion the proxy composed (grading); the answer's JSON. Raises ProviderError."""
        ...

    def models(self) -> list[dict[str, Any]]:
        """The models this provider lists (OpenAI model objects); raises ProviderError."""
        ...

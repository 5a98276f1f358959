"""What of a client's request goes on to the provider besides its body: the few headers a
client may pass on, and our request id, so the upstream's logs can be matched with ours."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.core import request_state


def forwarded_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request headers that go upstream: the few a client may pass on, and our request id."""
    headers = {"OpenAI-Beta": environ["HTTP_OPENAI_BETA"]} if "HTTP_OPENAI_BETA" in environ else {}
    headers["X-Request-Id"] = request_state.current_id()
    return headers

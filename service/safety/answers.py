"""What a client gets when safety says no: the refusals, as OpenAI-shaped errors with a `safety`
object beside `error`, and the 503 of a check that could not say (`on_error: closed`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.core.errors import RequestRejected, Unavailable

CONTENT_FILTER = "content_filter"
UNAVAILABLE_CODE = "safety_unavailable"


def safety_object(phase: str, blocked_by: str | None, details: Mapping[str, Any]) -> dict[str, Any]:
    return {"phase": phase, "blocked_by": blocked_by, "details": dict(details)}


class ContentRefused(RequestRejected):
    """400: what the client sent did not pass its safety policy; the provider was never asked."""

    code = CONTENT_FILTER
    kind = CONTENT_FILTER

    def __init__(self, message: str, safety: dict[str, Any], *, param: str | None = "messages") -> None:
        super().__init__(message, param=param)
        self.safety = safety

    def body(self) -> dict[str, Any]:
        return {**super().body(), "safety": self.safety}


class SafetyUnavailable(Unavailable):
    """503: a check failed or timed out and the policy fails closed (or names no known policy)."""

    code = UNAVAILABLE_CODE
    kind = UNAVAILABLE_CODE


_PARAMS = {"/chat/completions": "messages", "/completions": "prompt", "code": "code"}


def input_refused(path: str, safety: dict[str, Any], *, param: str | None = None) -> ContentRefused:
    param = param or _PARAMS.get(path, "input")  # the Responses API, embeddings, moderations
    check = safety["blocked_by"]
    what = "personal data" if check == "pii" else f"the {check} check"
    return ContentRefused(
        f"The request was refused by the content safety policy ({what}); it was not sent to a model.",
        safety,
        param=param,
    )


def unavailable() -> SafetyUnavailable:
    return SafetyUnavailable("The content safety checks could not be completed; try again later.")


def output_refused(safety: dict[str, Any]) -> ContentRefused:
    """400 for generated media (an image, a transcript) the policy refused: nothing of it is sent
    (as Azure OpenAI answers an image its filter refused)."""
    what = f"the {safety['blocked_by']} check"
    return ContentRefused(
        f"The generated content was refused by the content safety policy ({what}); none of it was sent.",
        safety,
        param=None,
    )

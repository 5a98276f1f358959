"""The seam between the media routes and a client's safety policy.

The image and audio routes call their `Screen` at three points: `input_text` with an image
prompt (or the text to speak) before anything is sent, which answers the text to send (its
personal data redacted when the policy says so); `output_images` with the generated images
(OpenAI image objects, `b64_json` or `url`) before any is sent to the client; `output_text`
with a transcript or translation before it is sent. Each returns when the content may go, and
raises a `ProxyError` (the policy's refusal) when it may not: nothing of a refused answer
reaches the client.
`active()` says whether the current request's client has a policy at all (a streamed transcript
is then held back until it can be checked whole).

`NoScreen` checks nothing and costs nothing (the routes' tests use it). The real one is
`service.safety.screen.PolicyScreen`, over each request's client's policy; the app hands it to
the routes (`service.app.create_app`).
"""

from __future__ import annotations

from typing import Any, Protocol


class Screen(Protocol):
    def active(self) -> bool:
        """Whether the current request's client has a safety policy."""
        ...

    def input_text(self, text: str, param: str = "prompt") -> str:
        """Check a prompt (the client's field `param`) before it is sent: the text to send, or
        raise a ProxyError to refuse it."""
        ...

    def output_text(self, text: str) -> None:
        """Check text the provider answered (a transcript) before it is sent; raise to refuse it."""
        ...

    def output_images(self, images: list[dict[str, Any]]) -> None:
        """Check generated images (`b64_json` or `url` objects) before any is sent; raise to refuse."""
        ...


class NoScreen:
    """No policy: everything goes."""

    def active(self) -> bool:
        return False

    def input_text(self, text: str, param: str = "prompt") -> str:
        return text

    def output_text(self, text: str) -> None:
        return None

    def output_images(self, images: list[dict[str, Any]]) -> None:
        return None

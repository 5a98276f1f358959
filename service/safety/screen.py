"""The client's safety policy on the image and audio routes (`service.edge.screening.Screen`).

- a prompt (an image's, or the text to speak): the policy's PII rule and input checks, as a chat
  message's; refused with 400 `content_filter` before anything is sent;
- a transcript or translation: the output checks, as a whole answer's text;
- generated images: each of the policy's output `moderation` checks, one call per image with the
  image as its input (omni-moderation models accept `image_url` inputs: a `data:` URL for
  `b64_json`, the provider's https URL otherwise). The other output checks read text, not images.

A refused transcript or image is answered 400 `content_filter` with the `safety` object (phase
`output`): none of it reaches the client. Failures follow the policy's `on_error`; each check is
recorded, and each refusal is an incident, as on the other routes (`service.safety.runner`).
"""

from __future__ import annotations

from typing import Any

from service.safety.answers import output_refused
from service.safety.check import Check
from service.safety.gate import SafetyGate
from service.safety.moderation import ImageModeration, Moderation
from service.safety.runner import run_checks, run_phase

# The start of an image's base64 by its format (OpenAI's `output_format`: png, jpeg or webp).
_FORMATS = (("iVBOR", "image/png"), ("/9j/", "image/jpeg"), ("UklGR", "image/webp"), ("R0lGOD", "image/gif"))


def image_url(image: dict[str, Any]) -> str | None:
    """What a moderation model is given for an OpenAI image object, or None when it holds no image."""
    encoded = image.get("b64_json")
    if isinstance(encoded, str) and encoded:
        kind = next((mime for start, mime in _FORMATS if encoded.startswith(start)), "image/png")
        return f"data:{kind};base64,{encoded}"
    url = image.get("url")
    return url if isinstance(url, str) and url else None


class PolicyScreen:
    def __init__(self, gate: SafetyGate) -> None:
        self.gate = gate

    def active(self) -> bool:
        return self.gate.policy() is not None

    def input_text(self, text: str, param: str = "prompt") -> str:
        policy = self.gate.policy()
        if policy is None:
            return text
        return self.gate.guard_text(policy, text, param=param)

    def output_text(self, text: str) -> None:
        policy = self.gate.policy()
        if policy is None:
            return
        verdict = run_phase(policy, "output", text, self.gate.services)
        if verdict.flagged:
            raise output_refused(verdict.safety())

    def output_images(self, images: list[dict[str, Any]]) -> None:
        policy = self.gate.policy()
        if policy is None:
            return
        moderations = [check for check in policy.output if isinstance(check, Moderation)]
        checks: list[Check] = []
        for index, image in enumerate(images):
            url = image_url(image)
            if url is None:
                continue
            checks += [
                ImageModeration(timeout=check.timeout, moderation=check, url=url, index=index)
                for check in moderations
            ]
        if not checks:
            return
        verdict = run_checks(policy, "output", checks, "", self.gate.services)
        if verdict.flagged:
            raise output_refused(verdict.safety())

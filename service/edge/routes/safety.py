"""`POST /v1/safety/check`: a text checked alone by a safety policy (a system prompt, a document).

    {"text": "...", "role": "user" | "assistant", "policy": "<name>"}
    -> {"flagged": bool, "blocked_by": "<check>" | null, "details": {...}, "pii": ["email", ...]}

`role` (default `user`) picks the policy's input or output checks; `policy` (default: the client's
own) may name any defined policy. Served by the request pipeline like the relay routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.core.errors import RequestRejected
from service.core.responses import ClientResponse, JsonRoute
from service.safety.gate import SafetyGate

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

PATH = "/v1/safety/check"
ROLES = ("user", "assistant")
FIELDS = ("text", "role", "policy")


class SafetyCheckRoute(JsonRoute):
    generates = False  # its checks' model calls are charged as they are made (usage purpose "safety")

    def __init__(self, gate: SafetyGate) -> None:
        self.gate = gate

    def __call__(self, body: dict[str, Any], raw: bytes, environ: WSGIEnvironment) -> ClientResponse:
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise RequestRejected(
                f"Unknown field {unknown[0][:40]!r}; send text, role and (optionally) policy.",
                param=unknown[0][:40],
            )
        text, role, name = body.get("text"), body.get("role", "user"), body.get("policy")
        if "policy" in body and not isinstance(name, str):
            raise RequestRejected("'policy' must be a policy's name, as a string.", param="policy")
        if not isinstance(text, str):
            raise RequestRejected("'text' is required: the text to check, as a string.", param="text")
        if role not in ROLES:
            raise RequestRejected("'role' must be 'user' or 'assistant'.", param="role")
        if name is not None and name not in self.gate.policies.current():
            raise RequestRejected(
                "'policy' names no defined safety policy.", param="policy", code="policy_not_found"
            )
        policy = self.gate.policy(name)
        if policy is None:
            raise RequestRejected(
                "No safety policy applies to this client; name one with 'policy'.",
                param="policy",
                code="policy_not_found",
            )
        return ClientResponse.json(self.gate.check_text(policy, text, role))

"""What the routes call: the client's policy applied to a request, its answer, or a text alone.

A client without a policy (or the proxy running open) is not checked: `policy()` is None and the
routes go on as before, at the cost of one attribute read.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable
from typing import Any

from service.core import request_state
from service.core.responses import ClientResponse, unsent
from service.safety import pii
from service.safety.answers import input_refused, safety_object
from service.safety.check import Services
from service.safety.policies import SafetyPolicies
from service.safety.policy import Policy
from service.safety.runner import Verdict, incident, record, run_phase
from service.safety.stream import filtered
from service.safety.texts import INPUTS, answer_texts, emptied, every_text, rewritten, user_text

# An end user's id is logged only when it is plainly an id (an e-mail address would be personal data).
_END_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def end_user(body: dict[str, Any]) -> str | None:
    value = body.get("safety_identifier", body.get("user"))
    return value if isinstance(value, str) and _END_USER.fullmatch(value) else None


class SafetyGate:
    def __init__(self, policies: SafetyPolicies, services: Services) -> None:
        self.policies = policies
        self.services = services
        self._fingerprints: dict[int, tuple[Policy, str]] = {}

    def fingerprint(self) -> str:
        """What distinguishes answers given under the requesting client's policy from others: its name
        and a digest of its definition ("" without one). The answer cache keys on it, so an answer
        kept under one policy (or an earlier version of it) never serves a client under another."""
        policy = self.policy()
        if policy is None:
            return ""
        digest = self._fingerprints.get(id(policy))
        if digest is None or digest[0] is not policy:
            digest = (policy, hashlib.sha256(repr(policy).encode()).hexdigest()[:16])
            self._fingerprints = {id(policy): digest}  # the current policies' only; replaced on reload
        return f"safety:{digest[1]}"

    def policy(self, name: str | None = None) -> Policy | None:
        """`name`, else the requesting client's policy; None when it has none."""
        if name is None:
            state = request_state.current()
            name = state.safety_policy if state is not None else None
        return None if name is None else self.policies.get(name)

    def guard_input(self, policy: Policy, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The body to send on (personal data redacted when the policy says so); raises
        ContentRefused (400) or SafetyUnavailable (503). The provider is asked only after this."""
        user = end_user(body)
        if policy.pii != "off" and self._personal_data(policy, every_text(path, body), path, user):
            body = rewritten(path, body, pii.redact)
        if path in INPUTS:  # embeddings and moderations: their input is data, not a message to check
            return body
        verdict = run_phase(policy, "input", user_text(path, body), self.services, end_user=user)
        if verdict.flagged:
            raise input_refused(path, verdict.safety())
        return body

    def guard_text(self, policy: Policy, text: str, *, param: str) -> str:
        """A prompt sent alone (an image's, the text to speak) as the client's field `param`:
        its personal data redacted (or refused), then the input checks; raises as `guard_input`."""
        if policy.pii != "off" and self._personal_data(policy, [text], "prompt", None, param=param):
            text = pii.redact(text)
        verdict = run_phase(policy, "input", text, self.services)
        if verdict.flagged:
            raise input_refused("prompt", verdict.safety(), param=param)
        return text

    def guard_code(self, policy: Policy, code: str) -> str:
        """A student's program for grading (`/assessment`), its personal data redacted (or refused)."""
        if policy.pii == "off" or not self._personal_data(policy, [code], "code", None):
            return code
        return pii.redact(code)

    def _personal_data(
        self, policy: Policy, texts: Iterable[str], path: str, user: str | None, *, param: str | None = None
    ) -> bool:
        """Whether `texts` hold personal data to redact; raises ContentRefused when the policy blocks it."""
        started = time.perf_counter()
        kinds = pii_kinds(texts)
        if kinds and policy.pii == "block":
            record("input", "pii", "flagged", started)
            incident("input", "pii", kinds, user)
            raise input_refused(path, safety_object("input", "pii", {"categories": kinds}), param=param)
        record("input", "pii", "redacted" if kinds else "passed", started)
        return bool(kinds)

    def guard_answer(self, policy: Policy, path: str, answer: ClientResponse, body: dict[str, Any]) -> None:
        """Check a whole answer; a refused one keeps its status (200) and usage, its text emptied,
        `finish_reason: content_filter` and a `safety` object added."""
        if not policy.output or answer.status != 200:
            return
        try:
            data = json.loads(answer.content())
            if not isinstance(data, dict):
                return
            text = "\n\n".join(answer_texts(path, data))
            verdict = run_phase(policy, "output", text, self.services, end_user=end_user(body))
        except BaseException:
            answer({}, unsent).close()  # the provider call is recorded all the same
            raise
        if verdict.flagged:
            answer.replace_json({**emptied(path, data), "safety": verdict.safety()})

    def guard_stream(self, policy: Policy, path: str, answer: ClientResponse, body: dict[str, Any]) -> None:
        """Hold a streamed answer's events until their text passed the output checks."""
        if not policy.output or answer.status != 200:
            return
        user = end_user(body)

        def check(text: str) -> Verdict:
            return run_phase(policy, "output", text, self.services, end_user=user)

        answer.body = filtered(answer.body, check, path=path, segment_chars=policy.output_segment_chars)

    def check_text(self, policy: Policy, text: str, role: str) -> dict[str, Any]:
        """POST /v1/safety/check: the verdict of `policy` on `text` as the user's or the model's."""
        phase = "input" if role == "user" else "output"
        kinds = pii_kinds([text])
        if kinds and policy.pii == "block" and phase == "input":
            incident(phase, "pii", kinds, None)
            return {"flagged": True, "blocked_by": "pii", "details": {"categories": kinds}, "pii": kinds}
        if kinds and policy.pii == "redact":
            text = pii.redact(text)
        verdict = run_phase(policy, phase, text, self.services)
        return {
            "flagged": verdict.flagged,
            "blocked_by": verdict.blocked_by,
            "details": dict(verdict.details),
            "pii": kinds,
        }


def pii_kinds(texts: Iterable[str]) -> list[str]:
    """The kinds of personal data in any of `texts`, in `pii.KINDS` order."""
    found = {kind for text in texts for kind in pii.found(text)}
    return [kind for kind, _, _ in pii.KINDS if kind in found]

"""Running one phase of a policy: its checks, their timeouts, their records, and `on_error`.

Checks that need no network (the blocklist) run first, inline: a hit there costs no model call.
The others run concurrently, each in its own greenlet with a copy of the request's context (so
their usage records name the request and its client) and within its own `timeout`. Every check is
recorded on the request's state (phase, check, result, milliseconds: the access line's metrics);
a refusal writes one incident record on the logger `service.safety`, which holds no text.

A check that fails or times out: with `on_error: closed` (the default) the phase raises
SafetyUnavailable (503); with `open` the text passes and a WARNING says which check failed. A
check that flags wins over one that failed.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gevent

from service.core import request_state
from service.governance.usage import purpose
from service.safety.answers import safety_object, unavailable
from service.safety.check import Check, CheckFailed, Outcome, Services
from service.safety.policy import Policy

log = logging.getLogger("service.safety")


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    phase: str
    blocked_by: str | None = None
    categories: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def safety(self) -> dict[str, Any]:
        return safety_object(self.phase, self.blocked_by, self.details)


def run_phase(
    policy: Policy, phase: str, text: str, services: Services, *, end_user: str | None = None
) -> Verdict:
    """The verdict of `policy`'s `phase` checks on `text`; raises SafetyUnavailable (see above)."""
    checks = policy.checks(phase)
    if not checks or not text.strip():
        return Verdict(False, phase)
    return run_checks(policy, phase, checks, text, services, end_user=end_user)


def run_checks(
    policy: Policy,
    phase: str,
    checks: Sequence[Check],
    text: str,
    services: Services,
    *,
    end_user: str | None = None,
) -> Verdict:
    """The verdict of `checks` (of `policy`'s `phase`, or made from them: an image's moderation)."""
    results: list[tuple[Check, Outcome | None]] = []
    for check in checks:
        if check.local:  # no wait to time out, no model to charge: run as it is (the hot path)
            started = time.perf_counter()
            outcome = check.run(text, services)
            record(phase, check.kind, "flagged" if outcome.flagged else "passed", started)
            if outcome.flagged:
                return _refused(phase, check, outcome, end_user)
            results.append((check, outcome))
    remote = [check for check in checks if not check.local]
    if len(remote) == 1:
        results.append((remote[0], _timed(remote[0], phase, text, services)))
    elif remote:
        greenlets = [
            gevent.spawn(contextvars.copy_context().run, _timed, check, phase, text, services)
            for check in remote
        ]
        gevent.joinall(greenlets)
        results += [
            (check, greenlet.value if greenlet.successful() else None)
            for check, greenlet in zip(remote, greenlets, strict=True)
        ]
    for check in checks:  # the first in the policy's order that flagged
        result = next((o for c, o in results if c is check), None)
        if result is not None and result.flagged:
            return _refused(phase, check, result, end_user)
    failed = [check.kind for check, outcome in results if outcome is None]
    if failed:
        if policy.on_error == "closed":
            log.error(
                "Safety check %s failed; refusing the request (policy %s fails closed)",
                ", ".join(failed),
                policy.name,
                extra={"phase": phase, "checks": failed, "policy": policy.name},
            )
            raise unavailable()
        log.warning(
            "Safety check %s failed; letting the %s through (policy %s fails open)",
            ", ".join(failed),
            phase,
            policy.name,
            extra={"phase": phase, "checks": failed, "policy": policy.name},
        )
    return Verdict(False, phase)


def _timed(check: Check, phase: str, text: str, services: Services) -> Outcome | None:
    """The check's outcome, or None when it failed or ran out of time; recorded either way."""
    started = time.perf_counter()
    outcome: Outcome | None = None
    timer = gevent.Timeout(check.timeout)  # a BaseException: no provider code mistakes it for its own
    timer.start()
    try:
        with purpose("safety"):
            outcome = check.run(text, services)
        result = "flagged" if outcome.flagged else "passed"
    except gevent.Timeout as fired:
        if fired is not timer:
            raise
        log.warning("Safety check %s took over %g s", check.kind, check.timeout, extra={"check": check.kind})
        result = "error"
    except CheckFailed as error:
        log.warning("Safety check %s failed: %s", check.kind, error, extra={"check": check.kind})
        result = "error"
    except Exception:
        log.exception("Safety check %s raised", check.kind)
        result = "error"
    finally:
        timer.close()
    record(phase, check.kind, result, started)
    return outcome


def record(phase: str, check: str, result: str, started: float) -> None:
    """One check on the request's metrics (`service.ops.metrics`)."""
    state = request_state.current()
    if state is None:
        return
    ms = round((time.perf_counter() - started) * 1000, 2)
    entry: request_state.SafetyCheckRun = {"phase": phase, "check": check, "result": result, "ms": ms}
    if state.safety_checks is None:
        state.safety_checks = [entry]
    else:
        state.safety_checks.append(entry)


def _refused(phase: str, check: Check, outcome: Outcome, end_user: str | None) -> Verdict:
    incident(phase, check.kind, outcome.categories, end_user)
    details = {"categories": list(outcome.categories), **outcome.details}
    return Verdict(True, phase, check.kind, outcome.categories, details)


def incident(phase: str, check: str, categories: Sequence[str], end_user: str | None) -> None:
    """The incident record of a refusal: who, where, which check and categories; never the text."""
    state = request_state.current()
    fields = {
        "request_id": state.id if state else "-",
        "client": state.client if state else request_state.ANONYMOUS,
        "end_user": end_user,
        "phase": phase,
        "check": check,
        "categories": list(categories),
    }
    log.warning("Safety refused the %s (%s: %s)", phase, check, ", ".join(categories) or "-", extra=fields)

"""Safety policies: AIPROXY_SAFETY_POLICIES (or the secret `safety_policies`) parsed once.

    {"students": {"input":  [{"check": "blocklist", "words": ["badword"]},
                             {"check": "moderation", "model": "omni-moderation-latest", "threshold": 0.3}],
                  "output": [{"check": "judge", "model": "safety-judge", "prompt": "classroom"}],
                  "pii": "redact", "on_error": "closed", "output_segment_chars": 400}}

Every check is a frozen dataclass of its module (`service.safety.blocklist`, `moderation`, `judge`,
`comprehend`), built here from its entry: an unknown check or field, or an impossible value, is a
ValueError naming the policy, the phase, the check's position and the field, never a request's text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from service.safety import blocklist, comprehend, judge, moderation
from service.safety.check import Check

POLICY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PII_MODES = ("off", "redact", "block")
ON_ERROR = ("closed", "open")
PHASES = ("input", "output")
_POLICY_FIELDS = ("input", "output", "pii", "on_error", "output_segment_chars")
DEFAULT_SEGMENT_CHARS = 400
# Each check's module: its `parse(entry, where)` builds the check (service.safety.check.Check).
PARSERS: Mapping[str, Callable[[Mapping[str, Any], str], Check]] = {
    "blocklist": blocklist.parse,
    "moderation": moderation.parse,
    "judge": judge.parse,
    "comprehend": comprehend.parse,
}


@dataclass(frozen=True)
class Policy:
    name: str
    input: tuple[Check, ...] = ()
    output: tuple[Check, ...] = ()
    pii: str = "off"
    on_error: str = "closed"
    output_segment_chars: int = DEFAULT_SEGMENT_CHARS

    def checks(self, phase: str) -> tuple[Check, ...]:
        return self.input if phase == "input" else self.output

    @property
    def uses_comprehend(self) -> bool:
        return any(check.kind == "comprehend" for check in (*self.input, *self.output))


def parse_policies(raw: str) -> dict[str, Policy]:
    """Every policy in `raw` (JSON); ValueError with one line naming what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        where = (
            f" ({error.msg} at line {error.lineno} column {error.colno})"
            if isinstance(error, json.JSONDecodeError)
            else ""
        )
        raise ValueError(f"not valid JSON{where}") from None
    if not isinstance(data, dict):
        raise ValueError('must be a JSON object of named policies: {"<policy>": {"input": [...]}}')
    return {name: parse_policy(name, entry) for name, entry in data.items()}


def parse_policy(name: Any, entry: Any) -> Policy:
    if not isinstance(name, str) or not POLICY_NAME.match(name):
        raise ValueError(
            f"policy name {str(name)[:70]!r} is not valid; use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    where = f"policy {name!r}"
    if not isinstance(entry, dict):
        raise ValueError(f'{where} must be an object like {{"input": [...], "output": [...]}}')
    unknown = sorted(set(entry) - set(_POLICY_FIELDS))
    if unknown:
        raise ValueError(f"{where} has unknown field {unknown[0]!r}; allowed: {', '.join(_POLICY_FIELDS)}")
    phases = {}
    for phase in PHASES:
        entries = entry.get(phase, [])
        if not isinstance(entries, list):
            raise ValueError(f"{where}: {phase!r} must be a list of checks")
        phases[phase] = tuple(_check(item, f"{where}: {phase}[{i}]") for i, item in enumerate(entries))
    pii = entry.get("pii", "off")
    if pii not in PII_MODES:
        raise ValueError(f"{where}: 'pii' must be one of: {', '.join(PII_MODES)}")
    on_error = entry.get("on_error", "closed")
    if on_error not in ON_ERROR:
        raise ValueError(f"{where}: 'on_error' must be one of: {', '.join(ON_ERROR)}")
    segment = entry.get("output_segment_chars", DEFAULT_SEGMENT_CHARS)
    if isinstance(segment, bool) or not isinstance(segment, int) or not 20 <= segment <= 100_000:
        raise ValueError(f"{where}: 'output_segment_chars' must be a whole number from 20 to 100,000")
    return Policy(name, phases["input"], phases["output"], pii, on_error, segment)


def _check(item: Any, where: str) -> Check:
    if not isinstance(item, dict) or not isinstance(item.get("check"), str):
        raise ValueError(f'{where} must be an object with "check": one of {", ".join(PARSERS)}')
    parse = PARSERS.get(item["check"])
    if parse is None:
        raise ValueError(f"{where}: unknown check {item['check'][:40]!r}; use one of: {', '.join(PARSERS)}")
    return parse(item, f"{where} ({item['check']})")

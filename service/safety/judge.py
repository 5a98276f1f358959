"""The judge check: a model asked, through the proxy's routing, whether the text is appropriate.

The prompt comes from a versioned table shipped with the service (`prompts/<name>.json`: its
`version` and one text per locale), so every application asks the same question. The judge must
answer exactly `OK` or `INAPPROPRIATE`; anything else gets one retry asking for a JSON-schema enum
answer (structured output), and then the check has failed (the policy's `on_error` decides).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, ClassVar

from service.safety.calls import completion
from service.safety.check import PASSED, Check, CheckFailed, Outcome, Services, known_fields, text
from service.safety.check import timeout as timeout_of

ANSWERS = ("OK", "INAPPROPRIATE")
MAX_ANSWER_TOKENS = 10
_VERDICT_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"verdict": {"type": "string", "enum": list(ANSWERS)}},
            "required": ["verdict"],
            "additionalProperties": False,
        },
    },
}


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    locale: str
    text: str


@functools.cache
def prompt_table(name: str) -> Mapping[str, Any] | None:
    """The shipped prompt `name` (service/safety/prompts/<name>.json), or None."""
    if not name.isidentifier():
        return None
    resource = files("service.safety").joinpath("prompts", f"{name}.json")
    if not resource.is_file():
        return None
    table: Mapping[str, Any] = json.loads(resource.read_text(encoding="utf-8"))  # a shipped file
    return table


@dataclass(frozen=True)
class Judge(Check):
    kind: ClassVar[str] = "judge"
    model: str = ""
    prompt: Prompt = Prompt("", "", "", "")

    def run(self, text: str, services: Services) -> Outcome:
        messages = [
            {"role": "system", "content": self.prompt.text},
            # The text cannot close its own tag and pose as the prompt.
            {"role": "user", "content": f"<text>\n{text.replace('</text>', '</ text>')}\n</text>"},
        ]
        body = {"messages": messages, "temperature": 0, "max_tokens": MAX_ANSWER_TOKENS}
        answer = _content(completion(services, self.model, body, kind=self.kind, keep=_plain)).strip()
        if answer not in ANSWERS:
            structured = {**body, "max_tokens": 4 * MAX_ANSWER_TOKENS, "response_format": _VERDICT_SCHEMA}
            answer = _verdict(
                _content(completion(services, self.model, structured, kind=self.kind, keep=_json))
            )
        details = {"prompt": self.prompt.name, "version": self.prompt.version, "locale": self.prompt.locale}
        if answer == "INAPPROPRIATE":
            return Outcome(True, ("inappropriate",), details)
        return PASSED


def _content(data: dict[str, Any]) -> str:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        content = None
    return content if isinstance(content, str) else ""


def _plain(data: dict[str, Any]) -> bool:
    """Whether a plain answer may be kept by the answer cache: it is a verdict."""
    return _content(data).strip() in ANSWERS


def _json(data: dict[str, Any]) -> bool:
    """Whether a structured answer may be kept: it holds a verdict."""
    try:
        _verdict(_content(data))
    except CheckFailed:
        return False
    return True


def _verdict(content: str) -> str:
    try:
        verdict = json.loads(content).get("verdict")
    except (ValueError, AttributeError, RecursionError):
        verdict = None
    if not isinstance(verdict, str) or verdict not in ANSWERS:
        raise CheckFailed("the judge answered neither OK nor INAPPROPRIATE, twice")
    return verdict


def parse(entry: Mapping[str, Any], where: str) -> Judge:
    known_fields(entry, where, ("model", "prompt", "locale"))
    name = text(entry, "prompt", where, default="classroom")
    table = prompt_table(name)
    if table is None:
        raise ValueError(f"{where}: no shipped prompt named {name[:40]!r} (service/safety/prompts/)")
    locale = text(entry, "locale", where, default="en")
    locales = table["locales"]
    if locale not in locales:
        listed = ", ".join(sorted(locales))
        raise ValueError(f"{where}: prompt {name!r} has no locale {locale[:10]!r}; use one of: {listed}")
    return Judge(
        timeout=timeout_of(entry, where),
        model=text(entry, "model", where),
        prompt=Prompt(name, table["version"], locale, locales[locale]),
    )

"""An assessment request, read and checked once: POST /assessment, the sample routes and the
accuracy lab all build it here, so every caller gets the same rules and the same messages.

Fields arrive with the names of the HTTP API (`num-responses`, `remove-comments`, ...), as text
(forms, query strings) or as JSON values; every problem is a 400 naming the field
(docs/assessment.md). Limits bound the work one request can cause: the size of each program,
the total text graded, and the rubric's rows.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.assessment.rubric import Rubric, RubricError, parse_rubric
from service.core.errors import RequestRejected, quoted

MAX_RESPONSES = 10
MAX_TEMPERATURE = 2.0
# A student program is a few kilobytes; these bound what one request can make the worker do
# (comment removal and answer checking are pure Python: docs/assessment.md, "Limits").
MAX_CODE_CHARS = 200_000
MAX_GRADED_CHARS = 1_000_000  # the program, the prompt, the rubric and every example together
MAX_RUBRIC_ROWS = 200
MAX_EXAMPLES = 50
MAX_STUDENT_ID = 200
RESPONSE_TYPES = ("tsv", "json")
# Fields of the original service's current clients that this proxy accepts but does not act on
# (docs/assessment.md says why); the answer's metadata lists those a request carried.
IGNORED_FIELDS = ("code-feature-extractor", "lesson")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_WHOLE = re.compile(r"[+]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
# Longer number text is refused before it is converted: every limit here is a few digits, and
# int() of thousands of digits is slow (and refused by Python past 4,300).
MAX_NUMBER_CHARS = 30


@dataclass(frozen=True, kw_only=True)
class AssessmentRequest:
    code: str
    prompt: str
    rubric: Rubric
    examples: tuple[tuple[str, str], ...] = ()  # (example_code, example_answer)
    model: str
    # The caller's own provider key, used to reach the provider; never sent back or logged.
    api_key: str | None = field(default=None, repr=False)
    remove_comments: bool = False
    num_responses: int = 1
    temperature: float = 0.2
    student_id: str = "student"
    response_type: str = "tsv"
    ignored_fields: tuple[str, ...] = ()


def read_request(
    fields: Mapping[str, Any],
    *,
    default_model: str,
    code: str | None = None,
    prompt: str | None = None,
    rubric: str | None = None,
    examples: list | None = None,
) -> AssessmentRequest:
    """The request `fields` describe; `code`, `prompt`, `rubric` and `examples`, when given, are
    used instead of the fields of those names (the sample routes). RequestRejected names the field."""
    code = _text(fields, "code", allow_empty=True) if code is None else code
    prompt = _text(fields, "prompt") if prompt is None else prompt
    rubric_text = _text(fields, "rubric") if rubric is None else rubric
    pairs = _examples(fields.get("examples")) if examples is None else _examples(examples)
    if len(code) > MAX_CODE_CHARS:
        raise RequestRejected(
            f"'code' is too long: at most {MAX_CODE_CHARS:,} characters are graded.", param="code"
        )
    graded = len(code) + len(prompt) + len(rubric_text) + sum(len(a) + len(b) for a, b in pairs)
    if graded > MAX_GRADED_CHARS:
        raise RequestRejected(
            f"'examples' make the request too large: at most {MAX_GRADED_CHARS:,} characters of program, "
            f"prompt, rubric and examples are graded together ({graded:,} sent).",
            param="examples",
        )
    return AssessmentRequest(
        code=code,
        prompt=prompt,
        rubric=_rubric(rubric_text),
        examples=pairs,
        model=_optional_text(fields, "model") or default_model,
        api_key=provider_key(fields),
        remove_comments=_flag(fields, "remove-comments"),
        num_responses=_whole_number(fields, "num-responses", 1, 1, MAX_RESPONSES),
        temperature=_number(fields, "temperature", 0.2, 0, MAX_TEMPERATURE),
        student_id=_student_id(fields),
        response_type=_response_type(fields),
        ignored_fields=tuple(name for name in IGNORED_FIELDS if fields.get(name) not in (None, "")),
    )


def _text(fields: Mapping[str, Any], name: str, *, allow_empty: bool = False) -> str:
    if name not in fields or fields[name] is None:
        raise RequestRejected(f"'{name}' is required.", param=name)
    value = fields[name]
    if not isinstance(value, str):
        raise RequestRejected(f"'{name}' must be text.", param=name)
    if not allow_empty and not value.strip():
        raise RequestRejected(f"'{name}' must not be empty.", param=name)
    return value


def _optional_text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RequestRejected(f"'{name}' must be text.", param=name)
    return value.strip()


def _rubric(text: str) -> Rubric:
    try:
        rubric = parse_rubric(text)
    except RubricError as error:
        raise RequestRejected(str(error), param="rubric") from None
    if len(rubric.key_concepts) > MAX_RUBRIC_ROWS:
        raise RequestRejected(
            f"'rubric' has {len(rubric.key_concepts):,} key concepts; at most {MAX_RUBRIC_ROWS} are graded.",
            param="rubric",
        )
    return rubric


def _examples(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise RequestRejected(
                "'examples' is not valid JSON; send an array of [code, answer] pairs.", param="examples"
            ) from None
    if not isinstance(value, list | tuple):
        raise RequestRejected("'examples' must be a JSON array of [code, answer] pairs.", param="examples")
    if len(value) > MAX_EXAMPLES:
        raise RequestRejected(
            f"'examples' has {len(value):,} items; at most {MAX_EXAMPLES}.", param="examples"
        )
    pairs = []
    for index, pair in enumerate(value):
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise RequestRejected(
                f"'examples' item {index} must be a pair [example_code, example_answer].", param="examples"
            )
        if len(pair[0]) > MAX_CODE_CHARS:
            raise RequestRejected(
                f"'examples' item {index} is too long: at most {MAX_CODE_CHARS:,} characters.",
                param="examples",
            )
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _flag(fields: Mapping[str, Any], name: str) -> bool:
    value = fields.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RequestRejected(f"'{name}' must be 1 or 0 (or true or false).", param=name)


def _whole_number(fields: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _is_number_text(value.strip(), _WHOLE):
        number = int(value.strip())  # plain ASCII digits only: not `1_0`, not other scripts' digits
    if number is None or not low <= number <= high:
        raise RequestRejected(f"'{name}' must be a whole number from {low} to {high}.", param=name)
    return number


def _number(fields: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    number: float | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            number = None
    elif isinstance(value, str) and _is_number_text(value.strip(), _NUMBER):
        number = float(value.strip())
    if number is None or not math.isfinite(number) or not low <= number <= high:
        raise RequestRejected(f"'{name}' must be a number from {low:g} to {high:g}.", param=name)
    return number


def _is_number_text(text: str, form: re.Pattern) -> bool:
    return len(text) <= MAX_NUMBER_CHARS and form.fullmatch(text) is not None


def _student_id(fields: Mapping[str, Any]) -> str:
    value = fields.get("student-id")
    if value is None:
        return "student"
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise RequestRejected("'student-id' must be non-empty text.", param="student-id")
    value = value.strip()
    # It is written to log lines: keep it one short, printable line.
    if len(value) > MAX_STUDENT_ID or not value.isprintable():
        raise RequestRejected(
            f"'student-id' must be printable text of at most {MAX_STUDENT_ID} characters.", param="student-id"
        )
    return value


def _response_type(fields: Mapping[str, Any]) -> str:
    value = fields.get("response-type")
    if value is None or (isinstance(value, str) and not value.strip()):
        return "tsv"
    if isinstance(value, str) and value.strip().lower() in RESPONSE_TYPES:
        return value.strip().lower()
    shown = quoted(value, 40) if isinstance(value, str) else "a " + type(value).__name__
    raise RequestRejected(f"'response-type' must be tsv or json, not {shown}.", param="response-type")


def provider_key(fields: Mapping[str, Any]) -> str | None:
    """The optional 'api-key' field (a provider key the caller brings), or None when absent."""
    value = fields.get("api-key")
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestRejected("'api-key' must be text.", param="api-key")
    value = value.strip()
    if value and not (value.isascii() and value.isprintable() and " " not in value):
        # Never echo the value: it is a secret, sent perhaps by mistake.
        raise RequestRejected("'api-key' must be one word of printable ASCII characters.", param="api-key")
    return value or None

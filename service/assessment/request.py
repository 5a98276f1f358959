"""An assessment request, read and checked once: POST /assessment, the sample routes and the
accuracy lab all build it here, so every caller gets the same rules and the same messages.

Fields arrive with the names of the HTTP API (`num-responses`, `remove-comments`, ...), as text
(forms, query strings) or as JSON values; each is read as `service.assessment.fields` declares it,
and every problem is a 400 naming the field (docs/assessment.md). Limits bound the work one
request can cause: the size of each program, the total text graded, and the rubric's rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.assessment.fields import (
    API_KEY,
    CODE,
    EXAMPLES,
    IGNORED,
    MAX_GRADED_CHARS,
    MAX_RUBRIC_ROWS,
    MODEL,
    NUM_RESPONSES,
    PROMPT,
    REMOVE_COMMENTS,
    RESPONSE_TYPE,
    RUBRIC,
    STUDENT_ID,
    TEMPERATURE,
)
from service.assessment.rubric import Rubric, RubricError, parse_rubric
from service.core.errors import RequestRejected


@dataclass(frozen=True, kw_only=True)
class AssessmentRequest:
    code: str
    prompt: str
    rubric: Rubric
    examples: tuple[tuple[str, str], ...] = ()  # (example_code, example_answer)
    model: str
    # The caller's own provider key, used to reach the provider; never sent back or logged.
    api_key: str | None = field(default=None, repr=False)
    remove_comments: bool = REMOVE_COMMENTS.default
    num_responses: int = NUM_RESPONSES.default
    temperature: float = TEMPERATURE.default
    student_id: str = STUDENT_ID.default
    response_type: str = RESPONSE_TYPE.default
    ignored_fields: tuple[str, ...] = ()


def read_request(
    fields: Mapping[str, Any],
    *,
    default_model: str,
    code: str | None = None,
    prompt: str | None = None,
    rubric: str | None = None,
    examples: list[Any] | None = None,
) -> AssessmentRequest:
    """The request `fields` describe; `code`, `prompt`, `rubric` and `examples`, when given, are
    used instead of the fields of those names (the sample routes). RequestRejected names the field."""
    code = CODE.read(fields) if code is None else code
    prompt = PROMPT.read(fields) if prompt is None else prompt
    rubric_text = RUBRIC.read(fields) if rubric is None else rubric
    pairs = EXAMPLES.read(fields) if examples is None else EXAMPLES.parse(examples)
    CODE.check_length(code)
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
        model=MODEL.read(fields) or default_model,
        api_key=provider_key(fields),
        remove_comments=REMOVE_COMMENTS.read(fields),
        num_responses=NUM_RESPONSES.read(fields),
        temperature=TEMPERATURE.read(fields),
        student_id=STUDENT_ID.read(fields),
        response_type=RESPONSE_TYPE.read(fields),
        ignored_fields=tuple(ignored.name for ignored in IGNORED if ignored.read(fields)),
    )


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


def provider_key(fields: Mapping[str, Any]) -> str | None:
    """The optional 'api-key' field (a provider key the caller brings), or None when absent."""
    return API_KEY.read(fields)

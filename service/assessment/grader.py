"""Grade one student program against a rubric: the whole of the assessment short of HTTP.

`assess()` takes a request already read and checked (`service.assessment.request`), builds the
chat, asks the model for `num_responses` answers through the `complete` callable (the one seam to
a provider), drops invalid answers, votes, and returns the 200 body (docs/assessment.md).

A provider failure is the provider's error (`service.core.errors`), raised as it came; no usable answer
is a `NoValidAnswer` (502) listing why each answer was dropped. The pure-Python steps (comment
removal, reading and checking answers) run one piece at a time (`service.core.cpu`), so a large
request never stalls the other requests of its worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from service.assessment import grades, voting
from service.assessment.comments import remove_comments
from service.assessment.messages import build_messages
from service.assessment.request import AssessmentRequest
from service.assessment.rubric import Rubric
from service.core.cpu import pause
from service.core.errors import ProviderBadAnswer

log = logging.getLogger(__name__)

EMPTY_PROGRAM = "The program is empty."


class NoValidAnswer(ProviderBadAnswer):
    """None of the model's answers could be used; `reasons` says why each was dropped."""

    kind = "no_valid_answer"

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons


def assess(
    request: AssessmentRequest, complete: Callable[[dict[str, Any]], dict[str, Any]], *, agent: str = "openai"
) -> dict[str, Any]:
    """The 200 body `{"metadata": {...}, "data": [...]}`; `complete(body)` sends an OpenAI
    chat-completions body and returns the answer's JSON (raising a ProviderError on failure).
    Empty code gets the static answer and `complete` is never called."""
    started = time.perf_counter()
    code, examples = _prepare(request)
    if not code.strip():
        log.info("Empty program graded without the model", extra={"student_id": request.student_id})
        return {
            "metadata": _metadata("static", started, request, usage=_NO_USAGE, sent=None),
            "data": _empty_program_rows(request.rubric),
        }
    body = {
        "model": request.model,
        "temperature": request.temperature,
        "messages": build_messages(
            request.prompt, request.rubric.text, examples, code, response_type=request.response_type
        ),
        "n": request.num_responses,
    }
    response = complete(body)
    if not isinstance(response, dict):
        raise ProviderBadAnswer("The model's provider sent an answer that is not a JSON object.")
    texts = _choice_texts(response)
    valid, reasons = _judge(texts, request.rubric, request.response_type)
    for reason in reasons:
        # WARNING, not ERROR: a model misbehaving is not a fault of this service.
        # Caller-supplied values go in `extra`, which both log formats escape.
        log.warning(
            "Dropped an invalid model answer", extra={"student_id": request.student_id, "reason": reason}
        )
    if not valid:
        lead = (
            "The model's answer could not be used"
            if len(texts) == 1
            else f"None of the model's {len(texts)} answers could be used"
        )
        raise NoValidAnswer(f"{lead}: " + "; ".join(reasons), reasons)
    log.info(
        "Graded a program",
        extra={
            "student_id": request.student_id,
            "model": request.model,
            "valid": len(valid),
            "answers": len(texts),
        },
    )
    return {
        "metadata": _metadata(agent, started, request, usage=response.get("usage") or {}, sent=body),
        "data": voting.vote(valid),
    }


_NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _prepare(request: AssessmentRequest) -> tuple[str, list[tuple[str, str]]]:
    """The program and the examples as the model sees them (comments removed when asked)."""
    if not request.remove_comments:
        return request.code, list(request.examples)
    code = remove_comments(request.code)
    examples = []
    for example, answer in request.examples:
        pause()
        examples.append((remove_comments(example), answer))
    return code, examples


def _judge(
    texts: list[str | None], rubric: Rubric, response_type: str
) -> tuple[list[list[dict[str, Any]]], list[str]]:
    """The valid answers' rows, and why each invalid answer was dropped."""
    valid: list[list[dict[str, str]]] = []
    reasons: list[str] = []
    read = grades.parse_json_answer if response_type == "json" else grades.parse
    for number, text in enumerate(texts, start=1):
        pause()
        try:
            valid.append(grades.validate(read(text or ""), rubric))
        except grades.AnswerError as error:
            reasons.append(f"answer {number}: {error}")
    return valid, reasons


def _choice_texts(response: dict[str, Any]) -> list[str | None]:
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ProviderBadAnswer("The model's provider sent no answers (no 'choices').")
    texts: list[str | None] = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        texts.append(content if isinstance(content, str) else None)
    return texts


def _empty_program_rows(rubric: Rubric) -> list[dict[str, Any]]:
    return [
        {
            "Key Concept": concept,
            "Observations": EMPTY_PROGRAM,
            "Grade": grades.NO_EVIDENCE,
            "Reason": EMPTY_PROGRAM,
            "Votes": [grades.NO_EVIDENCE],
        }
        for concept in rubric.key_concepts
    ]


def _metadata(
    agent: str,
    started: float,
    request: AssessmentRequest,
    *,
    usage: dict[str, Any],
    sent: dict[str, Any] | None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "agent": agent,
        "time": round(time.perf_counter() - started, 3),
        "student_id": request.student_id,
        "usage": usage,
        "request": sent,
    }
    if request.response_type != "tsv":
        metadata["response_type"] = request.response_type
    if request.ignored_fields:
        metadata["ignored_fields"] = list(request.ignored_fields)
    return metadata

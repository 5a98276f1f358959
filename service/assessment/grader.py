"""Grade one student program against a rubric: the whole of SPEC section 7 short of HTTP.

`assess()` checks the request, builds the chat, asks the model for `num_responses` answers through
the `complete` callable (the one seam to a provider: the OpenAI-compatible upstream today), drops
invalid answers, votes, and returns the 200 body. Every failure is an `AssessmentError` carrying
the HTTP status the route answers with, so the accuracy tool sees the same outcomes as clients.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.assessment import answers, voting
from service.assessment.comments import remove_comments
from service.assessment.messages import build_messages
from service.assessment.rubric import Rubric, RubricError, parse_rubric
from service.upstream import UpstreamError

log = logging.getLogger(__name__)

MAX_RESPONSES = 10
# Student programs are a few kilobytes. The cap bounds the pure-Python comment scanner (about 1 µs
# a character), which runs on the worker's one thread and would stall every request it holds.
MAX_CODE_CHARS = 200_000
MAX_TEMPERATURE = 2.0
EMPTY_PROGRAM = "The program is empty."


@dataclass(frozen=True, kw_only=True)
class AssessmentRequest:
    code: str
    prompt: str
    rubric: str  # CSV text with header row
    examples: list[tuple[str, str]] = field(default_factory=list)  # (example_code, example_answer)
    model: str
    # Used by the caller when it builds `complete`; assess() never sends or returns it.
    api_key: str | None = field(default=None, repr=False)
    remove_comments: bool = False
    num_responses: int = 1
    temperature: float = 0.2
    student_id: str = "student"


class AssessmentError(Exception):
    """Grading failed. `status` is the HTTP status to answer with (400/429/502/503/504); `param`
    names the request field at fault (as the HTTP API spells it), `reasons` says why each model
    answer was dropped (502 only), `retry_after` is the upstream's Retry-After (429 only)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        reasons: list[str] | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.reasons = list(reasons or [])
        self.retry_after = retry_after


def assess(request: AssessmentRequest, complete: Callable[[dict], dict], *, agent: str = "openai") -> dict:
    """Grade; `complete(body)` sends an OpenAI chat-completions request body and returns the
    response JSON (it raises service.upstream.UpstreamError on failure). Returns the 200 body
    {"metadata": {...}, "data": [...]} of SPEC section 7. Empty code -> static answer, complete()
    never called."""
    started = time.perf_counter()
    rubric = _check(request)
    code = remove_comments(request.code) if request.remove_comments else request.code

    if not code.strip():
        log.info("Empty program graded without the model", extra={"student_id": request.student_id})
        return {
            "metadata": _metadata("static", started, request, usage=_NO_USAGE, sent=None),
            "data": _empty_program_rows(rubric),
        }

    examples = [
        (remove_comments(example) if request.remove_comments else example, answer)
        for example, answer in request.examples
    ]
    body = {
        "model": request.model,
        "temperature": request.temperature,
        "messages": build_messages(request.prompt, rubric.text, examples, code),
        "n": request.num_responses,
    }
    response = _complete(complete, body, caller_key=bool(request.api_key))
    texts = _choice_texts(response)

    valid: list[list[dict[str, str]]] = []
    reasons: list[str] = []
    for number, text in enumerate(texts, start=1):
        try:
            valid.append(answers.validate(answers.parse(text or ""), rubric))
        except answers.AnswerError as error:
            reason = f"answer {number}: {error}"
            reasons.append(reason)
            # WARNING, not ERROR: a model misbehaving is not a fault of this service.
            # Caller-supplied values go in `extra`, which both log formats escape.
            log.warning(
                "Dropped an invalid model answer", extra={"student_id": request.student_id, "reason": reason}
            )
    if not valid:
        if len(texts) == 1:
            lead = "The model's answer could not be used"
        else:
            lead = f"None of the model's {len(texts)} answers could be used"
        raise AssessmentError(502, f"{lead}: " + "; ".join(reasons), reasons=reasons)
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


def _check(request: AssessmentRequest) -> Rubric:
    """Reject what cannot be graded, naming the field as the HTTP API spells it."""
    if not isinstance(request.code, str):
        raise AssessmentError(400, "'code' must be text (it may be empty).", param="code")
    if len(request.code) > MAX_CODE_CHARS:
        raise AssessmentError(
            400, f"'code' is too long: at most {MAX_CODE_CHARS:,} characters are graded.", param="code"
        )
    if not isinstance(request.prompt, str) or not request.prompt.strip():
        raise AssessmentError(400, "'prompt' is required and must not be empty.", param="prompt")
    if not isinstance(request.rubric, str):
        raise AssessmentError(400, "'rubric' must be CSV text.", param="rubric")
    try:
        rubric = parse_rubric(request.rubric)
    except RubricError as error:
        raise AssessmentError(400, str(error), param="rubric") from None
    for index, pair in enumerate(request.examples):
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise AssessmentError(
                400,
                f"'examples' item {index} must be a pair [example_code, example_answer].",
                param="examples",
            )
        if len(pair[0]) > MAX_CODE_CHARS:
            raise AssessmentError(
                400,
                f"'examples' item {index} is too long: at most {MAX_CODE_CHARS:,} characters.",
                param="examples",
            )
    if not isinstance(request.model, str) or not request.model.strip():
        raise AssessmentError(400, "'model' must name a model.", param="model")
    n = request.num_responses
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_RESPONSES:
        raise AssessmentError(
            400, f"'num-responses' must be a whole number from 1 to {MAX_RESPONSES}.", param="num-responses"
        )
    t = request.temperature
    if (
        isinstance(t, bool)
        or not isinstance(t, int | float)
        or not math.isfinite(t)
        or not 0 <= t <= MAX_TEMPERATURE
    ):
        raise AssessmentError(
            400, f"'temperature' must be a number from 0 to {MAX_TEMPERATURE:g}.", param="temperature"
        )
    return rubric


def _complete(complete: Callable[[dict], dict], body: dict, *, caller_key: bool) -> dict:
    """Call the provider, turning its failures into the statuses of SPEC section 7."""
    try:
        response = complete(body)
    except UpstreamError as error:
        raise _mapped(error, caller_key=caller_key) from error
    if not isinstance(response, dict):
        raise AssessmentError(502, "The model's provider sent an answer that is not a JSON object.")
    return response


def _mapped(error: UpstreamError, *, caller_key: bool) -> AssessmentError:
    if error.kind == "no_key":
        # The client's message names OPENAI_API_KEY (and the secret's id when deployed).
        return AssessmentError(503, f"{error.message} Or send 'api-key' with the request.", param="api-key")
    if error.kind == "timeout":
        return AssessmentError(504, f"The model's provider was too slow: {error.message}")
    if error.kind == "http" and error.status == 429:
        return AssessmentError(
            429, f"The model's provider is rate limiting: {error.message}", retry_after=error.retry_after
        )
    if error.kind == "http" and error.status in (401, 403) and not caller_key:
        # The proxy's own credentials were refused: the operator's problem, not the caller's.
        return AssessmentError(502, f"The model's provider refused this proxy's credentials: {error.message}")
    if error.kind == "http" and error.status is not None and 400 <= error.status < 500:
        return AssessmentError(400, f"The model's provider rejected the request: {error.message}")
    if error.kind == "http":
        return AssessmentError(502, f"The model's provider failed (HTTP {error.status}): {error.message}")
    return AssessmentError(502, f"The model's provider could not be reached: {error.message}")


def _choice_texts(response: dict) -> list[str | None]:
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        raise AssessmentError(502, "The model's provider sent no answers (no 'choices').")
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
            "Grade": answers.NO_EVIDENCE,
            "Reason": EMPTY_PROGRAM,
            "Votes": [answers.NO_EVIDENCE],
        }
        for concept in rubric.key_concepts
    ]


def _metadata(
    agent: str, started: float, request: AssessmentRequest, *, usage: dict, sent: dict | None
) -> dict[str, Any]:
    return {
        "agent": agent,
        "time": round(time.perf_counter() - started, 3),
        "student_id": request.student_id,
        "usage": usage,
        "request": sent,
    }

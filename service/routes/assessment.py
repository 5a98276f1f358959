"""Rubric assessment over HTTP: `POST /assessment` and the sample routes `/test/assessment*`.

This module only reads and checks the request's fields and answers; grading itself is
`service.assessment.grader.assess()`. Fields come from a JSON body, a form-encoded or multipart
body (a multipart field may be an uploaded file) or the query string, under the names of SPEC
section 7.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, jsonify

from service import bedrock, runtime
from service.assessment.grader import AssessmentError, AssessmentRequest, assess
from service.assessment.providers import grading_provider
from service.assessment.samples import sample
from service.errors import ApiError
from service.routes.fields import provider_key_field, request_fields
from service.upstream import upstream_client

blueprint = Blueprint("assessment", __name__)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
MAX_STUDENT_ID = 200


@blueprint.post("/assessment")
def assessment() -> Response:
    fields = request_fields(uploads=True)
    return _grade(_request(fields, code=_required_text(fields, "code", allow_empty=True)))


@blueprint.route("/test/assessment", methods=["GET", "POST"])
def test_assessment() -> Response:
    return _grade(_request(request_fields(uploads=True), code=sample().code, from_sample=True))


@blueprint.route("/test/assessment/blank", methods=["GET", "POST"])
def test_assessment_blank() -> Response:
    return _grade(_request(request_fields(uploads=True), code="", from_sample=True))


def _grade(assessment_request: AssessmentRequest) -> Response:
    provider = grading_provider(
        assessment_request.model,
        runtime.settings().model_aliases,
        openai=upstream_client,
        bedrock=bedrock.bedrock_client,
        api_key=assessment_request.api_key,
    )
    # An alias is graded, and reported in metadata.request, as the model it stands for.
    assessment_request = dataclasses.replace(assessment_request, model=provider.model)
    try:
        return jsonify(assess(assessment_request, provider.complete, agent=provider.agent))
    except AssessmentError as error:
        headers = {"Retry-After": error.retry_after} if error.status == 429 and error.retry_after else None
        raise ApiError(error.status, error.message, param=error.param, headers=headers) from None


# --- reading the request -----------------------------------------------------------------------


def _request(fields: Mapping[str, Any], *, code: str, from_sample: bool = False) -> AssessmentRequest:
    settings = runtime.settings()
    if from_sample:
        prompt, rubric, examples = sample().prompt, sample().rubric, []
    else:
        prompt = _required_text(fields, "prompt")
        rubric = _required_text(fields, "rubric")
        examples = _examples(fields)
    return AssessmentRequest(
        code=code,
        prompt=prompt,
        rubric=rubric,
        examples=examples,
        model=_optional_text(fields, "model") or settings.assessment_model,
        api_key=provider_key_field(fields),
        remove_comments=_flag(fields, "remove-comments"),
        num_responses=_whole_number(fields, "num-responses", 1),
        temperature=_number(fields, "temperature", 0.2),
        student_id=_student_id(fields),
    )


def _required_text(fields: Mapping[str, Any], name: str, *, allow_empty: bool = False) -> str:
    if name not in fields or fields[name] is None:
        raise ApiError(400, f"'{name}' is required.", param=name)
    value = fields[name]
    if not isinstance(value, str):
        raise ApiError(400, f"'{name}' must be text.", param=name)
    if not allow_empty and not value.strip():
        raise ApiError(400, f"'{name}' must not be empty.", param=name)
    return value


def _optional_text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"'{name}' must be text.", param=name)
    return value.strip()


def _examples(fields: Mapping[str, Any]) -> list:
    value = fields.get("examples")
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise ApiError(
                400, "'examples' is not valid JSON; send an array of [code, answer] pairs.", param="examples"
            ) from None
    if not isinstance(value, list):
        raise ApiError(400, "'examples' must be a JSON array of [code, answer] pairs.", param="examples")
    return value  # each item is checked to be a [code, answer] pair by the grader (grader._check)


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
    raise ApiError(400, f"'{name}' must be 1 or 0 (or true or false).", param=name)


def _whole_number(fields: Mapping[str, Any], name: str, default: int) -> int:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ApiError(400, f"'{name}' must be a whole number.", param=name) from None


def _number(fields: Mapping[str, Any], name: str, default: float) -> float:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be a number.", param=name)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ApiError(400, f"'{name}' must be a number.", param=name) from None
    if not math.isfinite(number):
        raise ApiError(400, f"'{name}' must be a finite number.", param=name)
    return number


def _student_id(fields: Mapping[str, Any]) -> str:
    value = fields.get("student-id")
    if value is None:
        return "student"
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "'student-id' must be non-empty text.", param="student-id")
    value = value.strip()
    # It is written to log lines: keep it one short, printable line.
    if len(value) > MAX_STUDENT_ID or not value.isprintable():
        raise ApiError(
            400,
            f"'student-id' must be printable text of at most {MAX_STUDENT_ID} characters.",
            param="student-id",
        )
    return value

"""Rubric assessment over HTTP: `POST /assessment` and the sample routes `/test/assessment*`.

This module only gathers the request's fields (a JSON body, a form-encoded or multipart body where
a field may be an uploaded file, or the query string) and answers; reading and checking them is
`service.assessment.request`, grading is `service.assessment.grader` (docs/assessment.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flask import Blueprint
from flask import request as flask_request

from service.assessment.grader import assess
from service.assessment.providers import Grading
from service.assessment.request import AssessmentRequest, read_request
from service.assessment.samples import sample
from service.core.responses import ClientResponse
from service.edge.caching import through_cache
from service.edge.routes.fields import request_fields
from service.runtime import Runtime


def blueprint(runtime: Runtime) -> Blueprint:
    routes = Blueprint("assessment", __name__)
    default_model = runtime.settings.assessment_model

    def grade(request: AssessmentRequest) -> ClientResponse:
        policy = runtime.safety.policy()
        if policy is not None:  # the client's safety policy: personal data in the program stays here
            code = runtime.safety.guard_code(policy, request.code)
            if code is not request.code:
                request = dataclasses.replace(request, code=code)
        grading = Grading(runtime.router, request.model, api_key=request.api_key)
        # An alias is graded, and reported in metadata.request, as the model it stands for.
        request = dataclasses.replace(request, model=grading.model)

        def ask() -> ClientResponse:
            body = assess(request, grading, agent=grading.agent)
            if grading.answered_by is not None:
                body["metadata"]["agent"] = grading.agent  # a fallback may have answered
            return ClientResponse.json(body)

        # The same grading asked again is answered from the cache, for a client whose entry has one.
        return through_cache(
            runtime.answers,
            kind=flask_request.path,
            model=grading.model,
            body=question(request),
            is_sampled=request.temperature > 0 or request.num_responses > 1,
            cache_control=flask_request.headers.get("Cache-Control"),
            ask=ask,
            variant=runtime.safety.fingerprint(),
        )

    def sample_request(fields: Mapping[str, Any], code: str) -> AssessmentRequest:
        shipped = sample()
        return read_request(
            fields,
            default_model=default_model,
            code=code,
            prompt=shipped.prompt,
            rubric=shipped.rubric,
            examples=[],
        )

    @routes.post("/assessment")
    def assessment() -> ClientResponse:
        return grade(read_request(request_fields(uploads=True), default_model=default_model))

    @routes.route("/test/assessment", methods=["GET", "POST"])
    def test_assessment() -> ClientResponse:
        return grade(sample_request(request_fields(uploads=True), sample().code))

    @routes.route("/test/assessment/blank", methods=["GET", "POST"])
    def test_assessment_blank() -> ClientResponse:
        return grade(sample_request(request_fields(uploads=True), ""))

    return routes


def question(request: AssessmentRequest) -> dict[str, Any]:
    """What a grading depends on, for the answer cache: every field but the caller's provider key."""
    fields = {field.name: getattr(request, field.name) for field in dataclasses.fields(request)}
    fields.pop("api_key")
    fields["rubric"] = request.rubric.text
    return fields

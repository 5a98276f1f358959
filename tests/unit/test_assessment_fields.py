"""The OpenAPI document and the request parser agree on every assessment field: the defaults the
document states are what the parser reads when a field is absent, and its bounds and patterns
take exactly the values the parser takes, so the two cannot drift apart again."""

from __future__ import annotations

import dataclasses
import re

import pytest

from service.assessment.fields import OPTIONS
from service.assessment.request import AssessmentRequest, read_request
from service.core.errors import RequestRejected
from service.edge.openapi.document import build_document
from tests.support.assessment import PROMPT, RUBRIC

DOCUMENT = build_document()
BODY = DOCUMENT["paths"]["/assessment"]["post"]["requestBody"]["content"]
FORM = BODY["application/x-www-form-urlencoded"]["schema"]["properties"]
JSON = BODY["application/json"]["schema"]["properties"]
ATTRIBUTE = {field.name: field.name.replace("-", "_") for field in OPTIONS}
DEFAULTED = [name for name, schema in FORM.items() if "default" in schema]


def read(**fields) -> AssessmentRequest:
    return read_request({"code": "go();", "prompt": PROMPT, "rubric": RUBRIC, **fields}, default_model="m")


def accepts(name: str, value) -> bool:
    try:
        read(**{name: value})
    except RequestRejected as rejected:
        assert rejected.param == name
        return False
    return True


def text_pattern(name: str) -> re.Pattern:
    return re.compile(FORM[name]["pattern"])


def json_numbers(name: str) -> dict:
    return next(choice for choice in JSON[name]["oneOf"] if "minimum" in choice)


def test_every_option_with_a_default_states_it():
    assert sorted(DEFAULTED) == sorted(
        ["remove-comments", "num-responses", "temperature", "student-id", "response-type"]
    )


@pytest.mark.parametrize("name", DEFAULTED)
def test_the_documented_default_is_what_the_parser_reads_for_an_absent_field(name):
    attribute = ATTRIBUTE[name]
    absent = getattr(read(), attribute)
    assert getattr(read(**{name: FORM[name]["default"]}), attribute) == absent
    assert absent == {f.name: f.default for f in dataclasses.fields(AssessmentRequest)}[attribute]
    assert text_pattern(name).search(FORM[name]["default"])


@pytest.mark.parametrize("name", ["num-responses", "temperature"])
def test_the_documented_bounds_are_the_parsers(name):
    bounds = json_numbers(name)
    low, high = bounds["minimum"], bounds["maximum"]
    step = 1 if bounds["type"][0] == "integer" else 0.001
    for value in (low, high):
        assert accepts(name, value) and accepts(name, str(value)) and text_pattern(name).search(str(value))
    for value in (low - step, high + step):
        assert not accepts(name, value) and not accepts(name, str(value))
        assert not text_pattern(name).search(str(value))
    assert f"from {low} to {high}" in FORM[name]["description"]


@pytest.mark.parametrize("name", ["num-responses", "temperature", "remove-comments", "response-type"])
def test_the_text_pattern_takes_what_the_parser_takes(name):
    words = ["", " ", "1", "0", "2", "3", "9", "10", "11", "+7", "007", "-1", "-0", "0.2", "1.5", "2.0"]
    words += ["2.01", "true", "FALSE", " yes ", "On", "off", "no", "maybe", "tsv", "JSON", " Tsv ", "csv"]
    words += ["1e0"]
    pattern = text_pattern(name)
    # The parser also reads exponents (`1e0`), which no pattern describes.
    disagree = [w for w in words if bool(pattern.search(w)) != accepts(name, w) and "e" not in w]
    assert disagree == []


def test_student_id_is_documented_with_the_parsers_length():
    pattern = text_pattern("student-id")
    limit = int(re.search(r"at most (\d+)", FORM["student-id"]["description"]).group(1))
    for text in ("a" * limit, " a b ", "x"):
        assert pattern.search(text) and accepts("student-id", text)
    for text in ("a" * (limit + 1), "", "  ", "a\tb"):
        assert not pattern.search(text) and not accepts("student-id", text)

"""Input that lenient parsing used to take, each refused (or bounded) through the HTTP API: numbers
in other scripts or with underscores, percent-escapes of bytes that are not UTF-8, a CSV quote that
never ends, an upstream's absurd Retry-After, a rubric header row of 800 KB, and forms of thousands
of parts or of one large field."""

from __future__ import annotations

import io
import json
from urllib.parse import quote, urlencode

import pytest

from testbed.openai_upstream import Fail
from tests.support.app import make_app
from tests.support.assessment import PROMPT, RUBRIC

KEY = "sk-configured-provider-key"


@pytest.fixture
def client(fake_openai):
    app = make_app(OPENAI_BASE_URL=fake_openai.url, OPENAI_API_KEY=KEY, AIPROXY_UPSTREAM_RETRIES="0")
    return app.test_client()


def fields(**overrides: object) -> dict:
    return {"code": "var a = 1;\n", "prompt": PROMPT, "rubric": RUBRIC, **overrides}


def error_of(response, status: int = 400) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    return response.get_json()["error"]


# --- numbers: ASCII digits only --------------------------------------------------------------------

# Python's int() and float() take all of these; full-width and Arabic-Indic digits written as escapes.
NOT_WHOLE_NUMBERS = ["1_0", "\uff11\uff10", "\u0661\u0660", "\u0663", "+1_0", " 1_0 "]
NOT_NUMBERS = ["0.1_5", "\uff11.\uff15", "1_0e-1", "\u0660.\u0665"]


@pytest.mark.parametrize("value", NOT_WHOLE_NUMBERS)
def test_num_responses_takes_ascii_digits_only(client, fake_openai, value):
    for response in (
        client.post("/assessment", data=fields(**{"num-responses": value})),
        client.post("/assessment", json=fields(**{"num-responses": value})),
        client.get("/test/assessment/blank?" + urlencode({"num-responses": value})),
    ):
        assert error_of(response)["param"] == "num-responses"
    assert fake_openai.requests == []


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_temperature_takes_ascii_digits_only(client, fake_openai, value):
    for response in (
        client.post("/assessment", data=fields(temperature=value)),
        client.post("/assessment", json=fields(temperature=value)),
    ):
        assert error_of(response)["param"] == "temperature"
    assert fake_openai.requests == []


HUGE = "9" * 5000  # past Python's 4,300 digits for int()


def test_numbers_of_thousands_of_digits_are_a_400_naming_the_field_and_its_limits(client, fake_openai):
    huge = fields(**{"num-responses": HUGE})
    for response in (
        client.post("/assessment", data=huge),
        client.post("/assessment", data=huge, content_type="multipart/form-data"),
        client.post("/assessment", json=huge),
        client.get("/test/assessment/blank?num-responses=" + HUGE),
    ):
        error = error_of(response)
        assert (error["param"], error["message"]) == (
            "num-responses",
            "'num-responses' must be a whole number from 1 to 10.",
        )
    error = error_of(client.post("/assessment", data=fields(temperature=HUGE)))
    assert error["param"] == "temperature"
    assert error["message"] == "'temperature' must be a number from 0 to 2."
    assert fake_openai.requests == []


def test_a_json_body_with_an_integer_too_long_to_read_says_so(client, fake_openai):
    body = json.dumps(fields())[:-1] + ', "num-responses": ' + HUGE + "}"
    for path in ("/assessment", "/test/openai"):
        message = error_of(client.post(path, data=body, content_type="application/json"))["message"]
        assert "a number too long to read: an integer of more than 4,300 digits" in message
        assert "UTF-8" not in message
    assert fake_openai.requests == []


def test_plain_numbers_in_text_are_still_read(client):
    response = client.get("/test/assessment/blank?num-responses=+10&temperature=%201.5%20")
    assert response.status_code == 200, response.get_data(as_text=True)


# --- text must be UTF-8, whatever the encoding of the body ------------------------------------------

FORM = "application/x-www-form-urlencoded"


def test_form_encoded_escapes_of_bytes_that_are_not_utf8_are_refused(client, fake_openai):
    body = f"code=var%20a%20%3D%20%22%FF%FE%22&prompt={quote(PROMPT)}&rubric={quote(RUBRIC)}"
    error = error_of(client.post("/assessment", data=body, content_type=FORM))
    assert (error["param"], error["message"]) == ("code", "The form field 'code' is not UTF-8 text.")
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"student-id": "\xff"}', "application/json"),
        (
            b'--b\r\nContent-Disposition: form-data; name="student-id"\r\n\r\n\xff\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
        ),
        (b"student-id=%FF", FORM),
    ],
    ids=["json", "multipart", "form"],
)
def test_every_body_encoding_refuses_bytes_that_are_not_utf8(client, body, content_type):
    response = client.post("/test/assessment/blank", data=body, content_type=content_type)
    assert error_of(response)["message"]
    assert "\ufffd" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"--b\r\n[]--b--\r\n", "multipart/form-data; boundary=b", "its parts are malformed"),
        (b"student-id=s-1", "multipart/form-data; boundary=b", "its parts are malformed"),
        (b"--b\r\n\r\nx\r\n--b--\r\n", "multipart/form-data", "no boundary"),
    ],
    ids=["not parts", "not multipart", "no boundary"],
)
def test_a_multipart_body_that_cannot_be_read_is_refused_not_taken_as_empty(
    client, body, content_type, message
):
    error = error_of(client.post("/test/assessment/blank", data=body, content_type=content_type))
    assert message in error["message"]


def test_a_multipart_body_without_parts_is_an_empty_form(client):
    for body in (b"", b"--b--\r\n"):
        response = client.post(
            "/test/assessment/blank", data=body, content_type="multipart/form-data; boundary=b"
        )
        assert response.status_code == 200, response.get_data(as_text=True)


def test_a_long_field_name_is_not_echoed_with_its_bad_bytes(client):
    body = "x" * 5_000 + "=%FF"
    response = client.post("/test/assessment/blank", data=body, content_type=FORM)
    error = error_of(response)
    assert error["param"] is None
    assert len(response.get_data()) < 600


def test_query_string_escapes_of_bytes_that_are_not_utf8_are_refused(client):
    error = error_of(client.get("/test/assessment/blank?student-id=s%FF1"))
    assert (error["param"], error["message"]) == (
        "student-id",
        "The form field 'student-id' is not UTF-8 text.",
    )


def test_a_replacement_character_sent_as_utf8_is_text_like_any_other(client):
    for response in (
        client.post("/test/assessment/blank", data="student-id=s%EF%BF%BD1", content_type=FORM),
        client.get("/test/assessment/blank?student-id=s%EF%BF%BD1"),
    ):
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["metadata"]["student_id"] == "s\ufffd1"


# --- the rubric --------------------------------------------------------------------------------------


def test_a_rubric_quote_that_never_ends_is_refused(client, fake_openai):
    rubric = 'Key Concept,Notes\nVariables,"the quote never ends\nConditionals,x\nFunctions,y\n'
    error = error_of(client.post("/assessment", data=fields(rubric=rubric)))
    assert error["param"] == "rubric"
    assert "not readable CSV" in error["message"]
    assert fake_openai.requests == []


def test_a_huge_header_row_without_key_concept_is_not_echoed(client, fake_openai):
    header = ",".join(f"Column number {n}" for n in range(50_000))  # about 800 KB
    assert len(header) > 800_000
    error = error_of(client.post("/assessment", json=fields(rubric=header + "\nVariables\n")))
    assert error["param"] == "rubric"
    assert "no 'Key Concept' column" in error["message"]
    assert len(error["message"]) < 400
    assert "more characters" in error["message"]
    assert fake_openai.requests == []


# --- forms of many parts, or of one large field ------------------------------------------------------


def test_thousands_of_small_multipart_parts_are_refused_as_too_many(client, fake_openai):
    parts = {**fields(), **{f"extra-{n}": "x" for n in range(5_000)}}
    response = client.post("/assessment", data=parts, content_type="multipart/form-data")
    error = error_of(response)
    assert "more than 1,000 fields or files" in error["message"]
    assert "too large" not in error["message"]
    assert fake_openai.requests == []


def test_a_form_encoded_body_of_more_than_1000_fields_is_refused_as_a_multipart_one_is(client, fake_openai):
    extra = 1_001 - len(fields())
    many = {**fields(), **{f"extra-{n}": "x" for n in range(extra)}}
    answers = [
        client.post("/assessment", data=urlencode(many), content_type=FORM),
        client.post("/assessment", data=many, content_type="multipart/form-data"),
    ]
    form, multipart = (error_of(answer) for answer in answers)
    assert form == multipart
    assert form["message"] == "The form has more than 1,000 fields or files; send at most 1,000."
    # One field fewer is read as a form: it gets as far as the grader (here, refused by the model).
    fake_openai.enqueue(Fail(400, "model refused"))
    fewer = {**fields(), **{f"extra-{n}": "x" for n in range(extra - 1)}}
    answer = client.post("/assessment", data=urlencode(fewer), content_type=FORM)
    assert "fields or files" not in answer.get_data(as_text=True)
    assert len(fake_openai.requests) == 1


def test_a_large_multipart_text_field_is_judged_by_its_own_limit(client, fake_openai):
    # 660 KB of program as a text part (not a file): over Werkzeug's 500 KB for one form field in
    # memory, which is not the proxy's limit; the answer names the proxy's limit for `code`.
    data = fields(code="var a = 1;\n" * 60_000)
    error = error_of(client.post("/assessment", data=data, content_type="multipart/form-data"))
    assert (error["param"], error["message"]) == (
        "code",
        "'code' is too long: at most 200,000 characters are graded.",
    )
    # Within the proxy's limits, a large text part is read whole.
    data = fields(code="var a = 1;\n" * 18_000, prompt=PROMPT + " " * 400_000)
    fake_openai.enqueue(Fail(500, "stop here"))
    response = client.post("/assessment", data=data, content_type="multipart/form-data")
    assert response.status_code == 502, response.get_data(as_text=True)[:300]
    assert len(fake_openai.requests[-1].body["messages"][-1]["content"]) == 11 * 18_000


# --- the upstream's Retry-After ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "relayed"),
    [("1e9", "600"), ("1e400", "600"), ("86400", "600"), ("2.4", "2"), ("-5", "1"), ("nan", None)],
)
def test_an_upstream_retry_after_reaches_the_client_capped(client, fake_openai, sent, relayed):
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    fake_openai.enqueue(Fail(429, "Slow down", headers={"Retry-After": sent}))
    response = client.post("/v1/chat/completions", json=chat)
    assert response.status_code == 429
    assert response.headers.get("Retry-After") == relayed
    # Grading (a request the proxy composed) passes it on the same way.
    fake_openai.enqueue(Fail(429, "Slow down", headers={"Retry-After": sent}))
    response = client.post("/assessment", data=fields())
    assert response.status_code == 429
    assert response.headers.get("Retry-After") == relayed


# --- /test/openai ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [{}, 0, False, ["gpt-4o"]])
def test_test_openai_refuses_a_model_that_is_not_text(client, fake_openai, model):
    error = error_of(client.post("/test/openai", json={"model": model}))
    assert error["param"] == "model"
    assert fake_openai.requests == []


def test_test_openai_takes_a_blank_or_null_model_as_the_default(client, fake_openai):
    for body in ({"model": None}, {"model": "  "}):
        assert client.post("/test/openai", json=body).status_code == 200
        assert fake_openai.requests[-1].body["model"] == "gpt-4o-mini"
    assert json.loads(fake_openai.requests[-1].raw)["messages"][0]["content"] == "Hello world"


def test_uploaded_files_must_be_utf8_too(client):
    data = {**fields(), "code": (io.BytesIO(b"var a = '\xff';\n"), "program.js")}
    error = error_of(client.post("/assessment", data=data, content_type="multipart/form-data"))
    assert (error["param"], error["message"]) == ("code", "The uploaded 'code' is not UTF-8 text.")

"""POST /assessment and /test/assessment*, end to end through the app against the fake upstream."""

from __future__ import annotations

import io
import json

import pytest

from service.assessment.samples import sample
from testbed.openai_upstream import Fail, Hang, Reply
from testbed.server import free_port
from tests.support.app import make_app
from tests.support.assessment import CONCEPTS, PROMPT, RUBRIC, tsv_answer

KEY = "sk-configured-provider-key"
NONE = ("No Evidence",) * 4
CODE = "var score = 0;\nfunction win() { score++; } // count\n"


@pytest.fixture
def app(fake_openai):
    return make_app(
        OPENAI_BASE_URL=fake_openai.url,
        OPENAI_API_KEY=KEY,
        AIPROXY_UPSTREAM_RETRIES="0",
        AIPROXY_ASSESSMENT_MODEL="gpt-assess-default",
    )


def fields(**overrides) -> dict:
    values = {"code": CODE, "prompt": PROMPT, "rubric": RUBRIC}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def assert_error(response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["message"]
    if param is not None:
        assert error["param"] == param
        assert param in error["message"]
    return error


# --- the three body encodings ----------------------------------------------------------------------


def test_form_encoded_request_is_graded(client, fake_openai):
    fake_openai.enqueue(
        Reply([tsv_answer("Convincing Evidence", "No Evidence", "Limited Evidence", "No Evidence")])
    )
    response = client.post("/assessment", data=fields(**{"student-id": "s-7", "temperature": "0.5"}))
    assert response.status_code == 200
    body = response.get_json()
    assert [row["Key Concept"] for row in body["data"]] == list(CONCEPTS)
    assert [row["Grade"] for row in body["data"]] == [
        "Convincing Evidence",
        "No Evidence",
        "Limited Evidence",
        "No Evidence",
    ]
    assert body["data"][0] == {
        "Key Concept": "Variables",
        "Observations": "observation A",
        "Grade": "Convincing Evidence",
        "Reason": "reason A",
        "Votes": ["Convincing Evidence"],
    }
    metadata = body["metadata"]
    assert metadata["agent"] == "openai"
    assert metadata["student_id"] == "s-7"
    assert set(metadata["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    sent = fake_openai.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body == metadata["request"]
    assert sent.body["model"] == "gpt-assess-default"  # AIPROXY_ASSESSMENT_MODEL
    assert sent.body["temperature"] == 0.5
    assert sent.body["n"] == 1
    assert sent.body["messages"][-1] == {"role": "user", "content": CODE}


def test_json_request_with_examples_and_options(client, fake_openai):
    fake_openai.enqueue(Reply([tsv_answer(*NONE)]))
    payload = fields(
        examples=[["var a;", "answer a"]],
        model="gpt-4o",
        **{"remove-comments": True, "num-responses": 1, "temperature": 0, "student-id": 1234},
    )
    response = client.post("/assessment", json=payload)
    assert response.status_code == 200
    sent = fake_openai.requests[-1].body
    assert sent["model"] == "gpt-4o"
    assert sent["temperature"] == 0
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][-1]["content"] == "var score = 0;\nfunction win() { score++; }\n"
    assert response.get_json()["metadata"]["student_id"] == "1234"


def test_multipart_request_with_the_program_as_an_uploaded_file(client, fake_openai):
    fake_openai.enqueue(Reply([tsv_answer(*NONE)]))
    data = fields(code=None, examples=json.dumps([["x();", "answer"]]), **{"remove-comments": "1"})
    data["code"] = (io.BytesIO(CODE.encode()), "game.js")
    response = client.post("/assessment", data=data, content_type="multipart/form-data")
    assert response.status_code == 200
    messages = fake_openai.requests[-1].body["messages"]
    assert messages[-1]["content"] == "var score = 0;\nfunction win() { score++; }\n"
    assert messages[1:3] == [{"role": "user", "content": "x();"}, {"role": "assistant", "content": "answer"}]


def test_caller_api_key_is_used_upstream_and_never_echoed(client, fake_openai):
    fake_openai.enqueue(Reply([tsv_answer(*NONE)]))
    response = client.post("/assessment", data=fields(**{"api-key": "sk-callers-own-key-123"}))
    assert response.status_code == 200
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-callers-own-key-123"
    assert "sk-callers-own-key-123" not in response.get_data(as_text=True)


# --- consensus and model misbehaviour ----------------------------------------------------------------


def test_n_choices_of_mixed_validity_vote(client, fake_openai):
    fake_openai.enqueue(
        Reply(
            [
                "```\n"
                + tsv_answer(
                    "Limited Evidence", "Convincing Evidence", "No Evidence", "No Evidence", tag="A"
                ),
                # An unknown grade and three key concepts missing:
                "Here you go:\n| Key Concept | Grade |\n|---|---|\n| Variables | Great |",
                json.dumps(
                    [
                        {"Key Concept": c, "Observations": "json", "Grade": g, "Reason": "json reason"}
                        for c, g in zip(
                            CONCEPTS,
                            ["Convincing Evidence", "Convincing Evidence", "Limited Evidence", "No Evidence"],
                            strict=True,
                        )
                    ]
                ),
                tsv_answer(
                    "Convincing Evidence", "Extensive Evidence", "Limited Evidence", "No Evidence", tag="D"
                ),
            ]
        )
    )
    response = client.post("/assessment", data=fields(**{"num-responses": "4"}))
    assert response.status_code == 200
    assert fake_openai.requests[-1].body["n"] == 4
    rows = {row["Key Concept"]: row for row in response.get_json()["data"]}
    assert rows["Variables"]["Votes"] == ["Limited Evidence", "Convincing Evidence", "Convincing Evidence"]
    assert (rows["Variables"]["Grade"], rows["Variables"]["Reason"]) == ("Convincing Evidence", "json reason")
    assert rows["Conditionals"]["Grade"] == "Convincing Evidence"
    assert rows["Functions"]["Grade"] == "Limited Evidence"
    assert rows["Functions"]["Observations"] == "json"


def test_every_answer_invalid_is_a_502_listing_the_reasons(client, fake_openai):
    fake_openai.enqueue(
        Reply(["No table here.", tsv_answer("No Evidence", "No Evidence", "Maybe", "No Evidence")])
    )
    response = client.post("/assessment", data=fields(**{"num-responses": "2"}))
    error = assert_error(response, 502)
    assert "answer 1: no table" in error["message"]
    assert "answer 2: grade 'Maybe' of 'Functions'" in error["message"]


@pytest.mark.parametrize(("remove", "sent"), [(1.0, "go();"), (0.0, "go(); // keep me")])
def test_remove_comments_takes_json_1_0_and_0_0_as_its_documented_enum_0_1_does(
    client, fake_openai, remove, sent
):
    # JSON Schema compares numbers by value: the document's `enum: [0, 1]` takes 1.0, so does the parser.
    fake_openai.enqueue(Reply([tsv_answer(*NONE)]))
    response = client.post("/assessment", json=fields(code="go(); // keep me", **{"remove-comments": remove}))
    assert response.status_code == 200
    assert fake_openai.requests[-1].body["messages"][-1]["content"].rstrip() == sent


# --- the empty program -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "remove"), [("", "0"), ("\n   \n", "0"), ("// TODO: write the game\n/* later */", "1")]
)
def test_empty_program_is_answered_statically_with_no_upstream_call(client, fake_openai, code, remove):
    response = client.post("/assessment", data=fields(code=code, **{"remove-comments": remove}))
    assert response.status_code == 200
    body = response.get_json()
    assert fake_openai.requests == []
    assert body["metadata"]["agent"] == "static"
    assert [(row["Key Concept"], row["Grade"]) for row in body["data"]] == [
        (c, "No Evidence") for c in CONCEPTS
    ]
    assert all(row["Observations"] == "The program is empty." for row in body["data"])


def test_empty_program_needs_no_provider_key(fake_openai):
    client = make_app(OPENAI_BASE_URL=fake_openai.url).test_client()
    response = client.post("/assessment", data=fields(code=""))
    assert response.status_code == 200
    assert response.get_json()["metadata"]["agent"] == "static"


# --- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["code", "prompt", "rubric"])
def test_missing_required_field_is_a_400_naming_it(client, fake_openai, name):
    assert_error(client.post("/assessment", data=fields(**{name: None})), 400, name)
    assert_error(client.post("/assessment", json=fields(**{name: None})), 400, name)
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"prompt": "   "}, "prompt"),
        ({"examples": "[not json"}, "examples"),
        ({"examples": '{"a": 1}'}, "examples"),
        ({"examples": '[["only code"]]'}, "examples"),
        ({"remove-comments": "maybe"}, "remove-comments"),
        ({"num-responses": "three"}, "num-responses"),
        ({"num-responses": "2.5"}, "num-responses"),
        ({"num-responses": "0"}, "num-responses"),
        ({"num-responses": "11"}, "num-responses"),
        ({"temperature": "warm"}, "temperature"),
        ({"temperature": "2.01"}, "temperature"),
        ({"temperature": "-1"}, "temperature"),
        ({"temperature": "nan"}, "temperature"),
        ({"student-id": "a\nforged log line"}, "student-id"),
        ({"student-id": "x" * 201}, "student-id"),
        ({"code": "let x = 1;\n" * 20_000}, "code"),
        ({"examples": json.dumps([["//\n" * 100_001, "answer"]])}, "examples"),
    ],
)
def test_unparseable_or_out_of_range_field_is_a_400_naming_it(client, fake_openai, overrides, param):
    assert_error(client.post("/assessment", data=fields(**overrides)), 400, param)
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"code": 12}, "code"),
        ({"examples": [["a", 1]]}, "examples"),
        ({"num-responses": True}, "num-responses"),
        ({"temperature": "hot"}, "temperature"),
        ({"remove-comments": 2}, "remove-comments"),
    ],
)
def test_json_fields_of_the_wrong_type_are_a_400_naming_them(client, payload, param):
    assert_error(client.post("/assessment", json=fields(**payload)), 400, param)


def test_rubric_without_key_concept_column_or_rows(client):
    error = assert_error(
        client.post("/assessment", data=fields(rubric="Concept,Level\nLoops,3\n")), 400, "rubric"
    )
    assert "Key Concept" in error["message"]
    assert_error(client.post("/assessment", data=fields(rubric="Key Concept,Level\n")), 400, "rubric")


def test_body_that_is_not_json_or_not_an_object(client):
    assert_error(client.post("/assessment", data="{oops", content_type="application/json"), 400)
    assert_error(client.post("/assessment", json=["code"]), 400)


def test_only_post_is_allowed(client):
    assert client.get("/assessment").status_code == 405


# --- upstream failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "status", "text"),
    [
        (Fail(404, "The model 'gpt-nope' does not exist", code="model_not_found"), 400, "gpt-nope"),
        # The configured key refused: the proxy's fault (502), not the caller's (see the next test).
        (Fail(401, "Incorrect API key provided: sk-wrong"), 502, "refused this proxy's credentials"),
        (Fail(500, "Upstream exploded"), 502, "Upstream exploded"),
        (Fail(502, "Bad gateway upstream"), 502, "Bad gateway upstream"),
    ],
)
def test_upstream_errors_are_mapped(client, fake_openai, failure, status, text):
    fake_openai.enqueue(failure)
    error = assert_error(client.post("/assessment", data=fields()), status)
    assert text in error["message"]


def test_a_refused_caller_supplied_key_is_the_callers_400(client, fake_openai):
    fake_openai.enqueue(Fail(401, "Incorrect API key provided: sk-caller"))
    error = assert_error(client.post("/assessment", data=fields(**{"api-key": "sk-caller-own-key"})), 400)
    assert "Incorrect API key provided" in error["message"]
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-caller-own-key"


def test_a_caller_key_no_header_can_carry_is_a_400_that_does_not_echo_it(client, fake_openai):
    response = client.post("/assessment", data=fields(**{"api-key": "sk-caller\nkey"}))
    error = assert_error(response, 400)
    assert error["param"] == "api-key"
    assert "sk-caller" not in response.get_data(as_text=True)
    assert fake_openai.requests == []


def test_an_alias_is_graded_and_reported_as_the_model_it_stands_for(fake_openai):
    app = make_app(
        OPENAI_BASE_URL=fake_openai.url,
        OPENAI_API_KEY="sk-provider",
        AIPROXY_MODEL_ALIASES=json.dumps({"fast": "gpt-4o-mini"}),
    )
    fake_openai.enqueue(Reply([tsv_answer(*NONE)]))
    response = app.test_client().post("/assessment", data=fields(model="fast"))
    assert response.status_code == 200
    assert response.get_json()["metadata"]["request"]["model"] == "gpt-4o-mini"
    assert fake_openai.requests[-1].body["model"] == "gpt-4o-mini"


def test_a_temperature_too_large_for_a_float_is_a_400(client, fake_openai):
    assert_error(client.post("/assessment", json=fields(temperature=10**400)), 400, "temperature")
    assert fake_openai.requests == []


def test_upstream_429_is_a_429_with_retry_after(client, fake_openai):
    fake_openai.enqueue(Fail(429, "Rate limit reached for gpt-4o", headers={"Retry-After": "20"}))
    response = client.post("/assessment", data=fields())
    assert_error(response, 429)
    assert response.headers["Retry-After"] == "20"


def test_upstream_too_slow_is_a_504(fake_openai):
    app = make_app(
        OPENAI_BASE_URL=fake_openai.url,
        OPENAI_API_KEY=KEY,
        AIPROXY_UPSTREAM_RETRIES="0",
        AIPROXY_UPSTREAM_TIMEOUT="0.3",
    )
    fake_openai.enqueue(Hang(3))
    assert_error(app.test_client().post("/assessment", data=fields()), 504)


def test_upstream_unreachable_is_a_502():
    app = make_app(
        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", OPENAI_API_KEY=KEY, AIPROXY_UPSTREAM_RETRIES="0"
    )
    assert_error(app.test_client().post("/assessment", data=fields()), 502)


def test_no_provider_key_is_a_503_naming_openai_api_key(fake_openai):
    client = make_app(OPENAI_BASE_URL=fake_openai.url).test_client()
    error = assert_error(client.post("/assessment", data=fields()), 503)
    assert "OPENAI_API_KEY" in error["message"]
    assert fake_openai.requests == []


# --- the sample routes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_sample_assessment_grades_the_shipped_program(client, fake_openai, method):
    fake_openai.enqueue(
        Reply(
            [
                tsv_answer(
                    "Extensive Evidence", "Extensive Evidence", "Convincing Evidence", "Convincing Evidence"
                )
            ]
        )
    )
    response = client.open("/test/assessment", method=method)
    assert response.status_code == 200
    body = response.get_json()
    assert [row["Grade"] for row in body["data"]] == [
        "Extensive Evidence",
        "Extensive Evidence",
        "Convincing Evidence",
        "Convincing Evidence",
    ]
    messages = fake_openai.requests[-1].body["messages"]
    assert messages[0]["content"].startswith(sample().prompt.strip())
    assert messages[-1]["content"] == sample().code


def test_sample_assessment_takes_options(client, fake_openai):
    fake_openai.enqueue(Reply([tsv_answer(*NONE), tsv_answer(*NONE)]))
    response = client.get("/test/assessment?num-responses=2&model=gpt-4o&remove-comments=1")
    assert response.status_code == 200
    sent = fake_openai.requests[-1].body
    assert (sent["n"], sent["model"]) == (2, "gpt-4o")
    assert "Catch the Stars" not in sent["messages"][-1]["content"]
    assert response.get_json()["data"][0]["Votes"] == ["No Evidence", "No Evidence"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_blank_sample_assessment_is_static(client, fake_openai, method):
    response = client.open("/test/assessment/blank", method=method)
    assert response.status_code == 200
    body = response.get_json()
    assert body["metadata"]["agent"] == "static"
    assert [row["Key Concept"] for row in body["data"]] == list(CONCEPTS)
    assert fake_openai.requests == []


# --- the original service's current clients ----------------------------------------------------


def json_answer(*grades: str, grade_field: str = "Grade") -> str:
    rows = [
        {"Key Concept": concept, "Observations": "seen", grade_field: grade, "Reason": "because"}
        for concept, grade in zip(CONCEPTS, grades, strict=True)
    ]
    return "```json\n" + json.dumps(rows) + "\n```"


def test_response_type_json_asks_for_json_rows_and_votes_on_them(client, fake_openai):
    fake_openai.enqueue(
        Reply(
            [
                json_answer("Limited Evidence", "No Evidence", "No Evidence", "No Evidence"),
                "Key Concept\tObservations\tGrade\tReason\nVariables\tx\tNo Evidence\ty\n",  # TSV: not JSON
                json_answer("Limited Evidence", "Convincing Evidence", "No Evidence", "No Evidence"),
            ]
        )
    )
    response = client.post("/assessment", data=fields(**{"response-type": "json", "num-responses": "3"}))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["data"][0]["Votes"] == ["Limited Evidence", "Limited Evidence"]  # the TSV answer dropped
    assert body["metadata"]["response_type"] == "json"
    system = fake_openai.requests[-1].body["messages"][0]["content"]
    assert "JSON array" in system and '"Key Concept"' in system


def test_response_type_other_than_tsv_or_json_is_a_400(client, fake_openai):
    assert_error(client.post("/assessment", data=fields(**{"response-type": "xml"})), 400, "response-type")
    assert fake_openai.requests == []


@pytest.mark.parametrize("response_type", ["tsv", "json"])
def test_rows_labelled_label_instead_of_grade_are_read(client, fake_openai, response_type):
    if response_type == "json":
        answer = json_answer(*(["Extensive Evidence"] * 4), grade_field="Label")
    else:
        answer = tsv_answer(*(["Extensive Evidence"] * 4)).replace("\tGrade\t", "\tLabel\t", 1)
    fake_openai.enqueue(Reply([answer]))
    response = client.post("/assessment", data=fields(**{"response-type": response_type}))
    assert response.status_code == 200, response.get_json()
    assert [row["Grade"] for row in response.get_json()["data"]] == ["Extensive Evidence"] * 4


def test_fields_the_proxy_does_not_act_on_are_listed_not_dropped_silently(client, fake_openai):
    fake_openai.enqueue(Reply([tsv_answer(*NONE)]))
    form = fields(**{"code-feature-extractor": "rules-v2", "lesson": "csd-u3-l7"})
    response = client.post("/assessment", data=form)
    assert response.status_code == 200
    assert response.get_json()["metadata"]["ignored_fields"] == ["code-feature-extractor", "lesson"]
    fake_openai.enqueue(Reply([tsv_answer(*NONE)]))
    plain = client.post("/assessment", data=fields())
    assert "ignored_fields" not in plain.get_json()["metadata"]

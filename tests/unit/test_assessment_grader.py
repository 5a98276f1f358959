"""assess(): messages, the static answer, consensus over mixed answers and the error mapping.

The model is the fake OpenAI upstream (a real HTTP server) reached through the real upstream
client, exactly as the route and the accuracy tool reach a provider.
"""

from __future__ import annotations

import json

import pytest

from service.assessment.grader import assess
from service.assessment.request import AssessmentRequest, read_request
from service.assessment.samples import sample
from service.core.errors import ProxyError
from service.gateway.providers.openai import OpenAICompatible
from testbed.openai_upstream import Fail, Hang, Reply
from testbed.server import free_port
from tests.support.assessment import CONCEPTS, PROMPT, RUBRIC, tsv_answer

KEY = "sk-provider-key-for-tests"
NONE = ("No Evidence",) * 4


def client_for(url: str, **options) -> OpenAICompatible:
    values = {"retries": 0, "timeout": 5.0, "connect_timeout": 2.0, "key_provider": lambda: KEY}
    values.update(options)
    return OpenAICompatible(name="openai", base_url=url, **values)


# The grader's keyword names, as the HTTP API spells the fields.
FIELD_NAMES = {
    "num_responses": "num-responses",
    "remove_comments": "remove-comments",
    "student_id": "student-id",
}


def request(**fields) -> AssessmentRequest:
    values = {"code": sample().code, "prompt": PROMPT, "rubric": RUBRIC, "model": "gpt-4o-mini"}
    values.update({FIELD_NAMES.get(name, name): value for name, value in fields.items()})
    return read_request(values, default_model="gpt-4o-mini")


def grade(fake, **fields) -> dict:
    return assess(request(**fields), client_for(fake.url).complete)


def test_request_layout_system_examples_then_code(fake_openai):
    fake_openai.enqueue(Reply([tsv_answer(*NONE)]))
    examples = [("var a = 1;", "answer one"), ("var b = 2;", "answer two")]
    result = grade(fake_openai, code="var x = 3;", examples=examples, temperature=0.7, num_responses=1)

    sent = fake_openai.requests[-1].body
    assert sent["model"] == "gpt-4o-mini"
    assert sent["temperature"] == 0.7
    assert sent["n"] == 1
    messages = sent["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"].startswith(PROMPT.strip())
    assert RUBRIC.strip() in messages[0]["content"]
    assert [m["content"] for m in messages[1:]] == [
        "var a = 1;",
        "answer one",
        "var b = 2;",
        "answer two",
        "var x = 3;",
    ]
    assert result["metadata"]["request"] == sent  # metadata shows exactly what was sent
    assert KEY not in json.dumps(result)


def test_metadata_has_agent_time_student_and_usage(fake_openai):
    usage = {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160}
    fake_openai.enqueue(Reply([tsv_answer(*NONE)], usage=usage))
    result = assess(request(student_id="s-42"), client_for(fake_openai.url).complete, agent="openai")
    metadata = result["metadata"]
    assert metadata["agent"] == "openai"
    assert metadata["student_id"] == "s-42"
    assert metadata["usage"] == usage
    assert isinstance(metadata["time"], float) and metadata["time"] >= 0
    assert [row["Key Concept"] for row in result["data"]] == list(CONCEPTS)


def test_remove_comments_strips_the_program_and_the_examples_keeping_lines(fake_openai):
    fake_openai.enqueue(Reply([tsv_answer(*NONE)]))
    code = 'var url = "http://x.org"; // where\n/* two\nlines */ go();'
    grade(fake_openai, code=code, examples=[("a(); // note", "answer")], remove_comments=True)
    messages = fake_openai.requests[-1].body["messages"]
    assert messages[-1]["content"] == 'var url = "http://x.org";\n\n go();'
    assert messages[1]["content"] == "a();"


def test_comments_are_sent_unless_removal_is_asked(fake_openai):
    fake_openai.enqueue(Reply([tsv_answer(*NONE)]))
    grade(fake_openai, code="go(); // keep me")
    assert fake_openai.requests[-1].body["messages"][-1]["content"] == "go(); // keep me"


@pytest.mark.parametrize(
    ("code", "remove"),
    [("", False), ("  \n\t\n", False), ("// only a comment\n/* and\nanother */\n", True)],
)
def test_empty_program_gets_the_static_answer_without_calling_the_model(fake_openai, code, remove):
    result = grade(fake_openai, code=code, remove_comments=remove, student_id="s-1")
    assert fake_openai.requests == []
    assert result["metadata"]["agent"] == "static"
    assert result["metadata"]["student_id"] == "s-1"
    assert result["metadata"]["request"] is None
    assert result["data"] == [
        {
            "Key Concept": concept,
            "Observations": "The program is empty.",
            "Grade": "No Evidence",
            "Reason": "The program is empty.",
            "Votes": ["No Evidence"],
        }
        for concept in CONCEPTS
    ]


def test_a_comment_only_program_is_graded_by_the_model_when_comments_are_kept(fake_openai):
    fake_openai.enqueue(Reply([tsv_answer(*NONE)]))
    result = grade(fake_openai, code="// only a comment\n")
    assert result["metadata"]["agent"] == "openai"
    assert len(fake_openai.requests) == 1


def test_mixed_answers_invalid_ones_dropped_valid_ones_vote(fake_openai, caplog):
    answers = [
        tsv_answer("Limited Evidence", "Extensive Evidence", "No Evidence", "No Evidence", tag="A"),
        "I am sorry, I cannot grade this.",
        tsv_answer("Convincing Evidence", "Extensive Evidence", "Limited Evidence", "No Evidence", tag="C"),
        tsv_answer("Convincing Evidence", "Some Evidence", "Limited Evidence", "No Evidence", tag="D"),
        tsv_answer("Convincing Evidence", "Limited Evidence", "No Evidence", "Limited Evidence", tag="E"),
    ]
    fake_openai.enqueue(Reply(answers))
    with caplog.at_level("INFO"):
        result = grade(fake_openai, num_responses=5)
    assert fake_openai.requests[-1].body["n"] == 5
    rows = {row["Key Concept"]: row for row in result["data"]}
    # Valid: A, C, E (B is prose, D has an unknown grade).
    assert rows["Variables"]["Votes"] == ["Limited Evidence", "Convincing Evidence", "Convincing Evidence"]
    assert rows["Variables"]["Grade"] == "Convincing Evidence"
    assert rows["Variables"]["Reason"] == "reason C"
    assert rows["Conditionals"]["Grade"] == "Extensive Evidence"
    assert rows["Functions"]["Votes"] == ["No Evidence", "Limited Evidence", "No Evidence"]
    assert rows["Functions"]["Grade"] == "No Evidence"
    assert rows["User Input"]["Votes"] == ["No Evidence", "No Evidence", "Limited Evidence"]
    dropped = [r for r in caplog.records if r.getMessage() == "Dropped an invalid model answer"]
    assert len(dropped) == 2
    assert all(r.levelname == "WARNING" for r in dropped)  # never ERROR: that reaches Honeybadger
    assert dropped[0].reason.startswith("answer 2: no table")
    assert dropped[1].reason.startswith("answer 4: grade 'Some Evidence'")
    assert {r.student_id for r in dropped} == {"student"}


def test_no_valid_answer_is_a_502_with_every_reason(fake_openai):
    fake_openai.enqueue(
        Reply(
            [
                "",
                "Sorry, no.",
                tsv_answer("No Evidence", "No Evidence", "No Evidence", tag="X", concepts=CONCEPTS[:3]),
            ]
        )
    )
    with pytest.raises(ProxyError) as caught:
        grade(fake_openai, num_responses=3)
    error = caught.value
    assert error.status == 502
    assert len(error.reasons) == 3
    assert error.reasons[0] == "answer 1: the answer is empty"
    assert error.reasons[1].startswith("answer 2: no table")
    assert error.reasons[2] == "answer 3: missing key concept 'User Input'"
    assert all(reason in error.message for reason in error.reasons)


def test_upstream_without_choices_is_a_502(fake_openai):
    fake_openai.enqueue(Reply(body={"id": "x", "choices": []}))
    with pytest.raises(ProxyError) as caught:
        grade(fake_openai)
    assert caught.value.status == 502


@pytest.mark.parametrize(
    ("failure", "status", "text"),
    [
        (Fail(429, "Rate limit reached", headers={"Retry-After": "7"}), 429, "Rate limit reached"),
        (
            Fail(404, "The model 'gpt-9' does not exist", code="model_not_found"),
            400,
            "The model 'gpt-9' does not exist",
        ),
        # The proxy's own key refused: the operator's fault, a gateway error, not the caller's 400.
        (Fail(401, "Incorrect API key provided"), 502, "refused this proxy's credentials"),
        (Fail(500, "The server had an error"), 502, "The server had an error"),
        (Fail(503, "Overloaded"), 502, "Overloaded"),
    ],
)
def test_upstream_http_errors_are_mapped(fake_openai, failure, status, text):
    fake_openai.enqueue(failure)
    with pytest.raises(ProxyError) as caught:
        grade(fake_openai)
    assert caught.value.status == status
    assert text in caught.value.message
    if status == 429:
        assert caught.value.headers["Retry-After"] == "7"


def test_upstream_too_slow_is_a_504(fake_openai):
    fake_openai.enqueue(Hang(3))
    with pytest.raises(ProxyError) as caught:
        assess(request(), client_for(fake_openai.url, timeout=0.3).complete)
    assert caught.value.status == 504


def test_upstream_unreachable_is_a_502():
    with pytest.raises(ProxyError) as caught:
        assess(request(), client_for(f"http://127.0.0.1:{free_port()}/v1").complete)
    assert caught.value.status == 502
    assert "could not be reached" in caught.value.message


def test_no_provider_key_is_a_503_naming_the_setting(fake_openai):
    client = client_for(fake_openai.url, key_provider=lambda: None)
    with pytest.raises(ProxyError) as caught:
        assess(request(), client.complete)
    assert caught.value.status == 503
    assert "OPENAI_API_KEY" in caught.value.message
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": "  "}, "prompt"),
        ({"rubric": "Concept\nLoops\n"}, "rubric"),
        ({"rubric": "Key Concept\n"}, "rubric"),
        ({"examples": [("only code",)]}, "examples"),
        ({"model": 7}, "model"),
        ({"num_responses": 0}, "num-responses"),
        ({"num_responses": 11}, "num-responses"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
    ],
)
def test_bad_requests_are_400_naming_the_field_and_call_nothing(fake_openai, fields, param):
    with pytest.raises(ProxyError) as caught:
        grade(fake_openai, **fields)
    assert (caught.value.status, caught.value.param) == (400, param)
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("fields", "param", "limits"),
    [
        ({"num_responses": "9" * 5000}, "num-responses", "from 1 to 10"),
        ({"num_responses": "0" * 30 + "1"}, "num-responses", "from 1 to 10"),
        ({"num_responses": 10**5000}, "num-responses", "from 1 to 10"),
        ({"temperature": "1" * 5000}, "temperature", "from 0 to 2"),
        ({"temperature": "0." + "1" * 5000}, "temperature", "from 0 to 2"),
        ({"temperature": 10**5000}, "temperature", "from 0 to 2"),
    ],
)
def test_numbers_of_thousands_of_digits_are_refused_naming_the_field_and_its_limits(
    fake_openai, fields, param, limits
):
    with pytest.raises(ProxyError) as caught:
        grade(fake_openai, **fields)
    assert (caught.value.status, caught.value.param) == (400, param)
    assert limits in caught.value.message
    assert fake_openai.requests == []


def test_number_text_up_to_its_length_limit_is_read():
    from service.assessment.fields import MAX_NUMBER_CHARS

    assert request(num_responses="0" * (MAX_NUMBER_CHARS - 1) + "3").num_responses == 3
    assert request(temperature=" 0." + "5" * (MAX_NUMBER_CHARS - 2) + " ").temperature == pytest.approx(5 / 9)


def test_bad_rubric_is_rejected_even_for_an_empty_program(fake_openai):
    with pytest.raises(ProxyError) as caught:
        grade(fake_openai, code="", rubric="Name,Points\nLoops,3\n")
    assert caught.value.param == "rubric"
    assert "no 'Key Concept' column" in caught.value.message

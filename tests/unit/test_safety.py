"""Safety policies and checks, each against what it really talks to (fake providers on 127.0.0.1)."""

from __future__ import annotations

import json
import time

import pytest

from service.config.secrets import SecretStore
from service.gateway.routing import build_router
from service.gateway.sse import split_events
from service.safety import pii
from service.safety.answers import SafetyUnavailable
from service.safety.check import CheckFailed, Services
from service.safety.policy import parse_policies
from service.safety.runner import run_phase
from service.safety.stream import filtered
from testbed.comprehend import FakeComprehend
from testbed.openai_upstream import FakeOpenAI, Hang, Reply
from tests.support.app import make_settings

KEY = "sk-provider-key-0123456789"


def policy(**entry):
    return parse_policies(json.dumps({"p": entry}))["p"]


def check_of(entry):
    return policy(input=[entry]).input[0]


@pytest.fixture
def fake():
    with FakeOpenAI(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def services(fake):
    settings = make_settings(
        OPENAI_BASE_URL=fake.url,
        OPENAI_API_KEY=KEY,
        AIPROXY_UPSTREAM_BACKOFF="0.01",
        AIPROXY_MODEL_ALIASES=json.dumps({"safety-judge": ["upstream-down/judge", "gpt-4o-mini"]}),
        AIPROXY_UPSTREAMS=json.dumps(
            {"upstream-down": {"base_url": "http://127.0.0.1:9/v1", "key_env": "OPENAI_API_KEY"}}
        ),
    )
    return Services(build_router(settings, SecretStore(settings.source, None, None)), settings.source)


# --- policies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (
            '{"p": {"input": [{"check": "blocklist"}]}}',
            "policy 'p': input[0] (blocklist) needs 'words' or 'patterns'",
        ),
        ('{"p": {"inputs": []}}', "policy 'p' has unknown field 'inputs'"),
        ('{"p": {"input": [{"check": "blocklist", "words": ["x"], "colour": 1}]}}', "unknown field 'colour'"),
        (
            '{"p": {"input": [{"check": "blocklist", "patterns": ["("]}]}}',
            "patterns[0] is not a regular expression",
        ),
        ('{"p": {"pii": "hide"}}', "policy 'p': 'pii' must be one of: off, redact, block"),
        ('{"p": {"on_error": "maybe"}}', "'on_error' must be one of: closed, open"),
        (
            '{"p": {"output": [{"check": "judge", "model": "m", "locale": "fr"}]}}',
            "has no locale 'fr'; use one of: en, es",
        ),
        (
            '{"p": {"output": [{"check": "judge", "model": "m", "prompt": "office"}]}}',
            "no shipped prompt named 'office'",
        ),
        (
            '{"p": {"output": [{"check": "moderation", "model": "m", "timeout": 0}]}}',
            "'timeout' must be a number from 0.1 to 120",
        ),
        ('{"p": {"output_segment_chars": 5}}', "'output_segment_chars' must be a whole number from 20"),
        ('{"p": {"input": [{"check": "comprehend", "language": "es"}]}}', "'language' must be one of: en"),
        ("[1]", "must be a JSON object of named policies"),
    ],
)
def test_a_bad_policy_is_named_in_one_line(raw, says):
    with pytest.raises(ValueError) as refused:
        parse_policies(raw)
    assert says in str(refused.value)
    assert "\n" not in str(refused.value)


def test_the_classroom_prompt_is_versioned_in_english_and_spanish():
    english = check_of({"check": "judge", "model": "m"}).prompt
    spanish = check_of({"check": "judge", "model": "m", "locale": "es"}).prompt
    assert english.name == spanish.name == "classroom" and english.version == spanish.version
    assert "middle-school classroom" in english.text and "INAPPROPRIATE or OK" in english.text
    assert "aula" in spanish.text and "INAPPROPRIATE u OK" in spanish.text


# --- blocklist and PII (no network) ------------------------------------------------------------


def test_the_blocklist_matches_whole_words_in_any_case_and_patterns():
    check = check_of({"check": "blocklist", "words": ["darn", "bad word"], "patterns": [r"\bkill\s+\w+"]})
    assert check.run("Oh DARN!").flagged
    assert check.run("a Bad Word here").categories == ("words",)
    assert not check.run("darned darnit undarn").flagged
    assert check.run("kill   time").details == {"matched": "patterns", "pattern": 0}
    assert not check.run("skills").flagged


def test_pii_finds_and_redacts_emails_phones_and_street_addresses_but_not_program_numbers():
    text = "Mail kid.name@school.org or call (555) 123-4567; I live at 123 Main Street, Apt 4."
    assert pii.found(text) == ["email", "address", "phone"]
    assert pii.redact(text) == "Mail [EMAIL] or call [PHONE]; I live at [ADDRESS]."
    program = "let x = 12345678; const pi = 3.14159265358; for (i = 0; i < 10; i++) {}"
    assert pii.found(program) == [] and pii.redact(program) == program


# --- moderation and judge through the proxy's routing ----------------------------------------


def moderation_answer(scores, flagged=False):
    return Reply(body={"results": [{"flagged": flagged, "categories": {}, "category_scores": scores}]})


def test_moderation_flags_at_the_threshold_or_a_category_threshold_else_on_the_providers_word(fake, services):
    by_threshold = check_of({"check": "moderation", "model": "omni-moderation-latest", "threshold": 0.3})
    fake.enqueue(moderation_answer({"violence": 0.3, "hate": 0.1}))
    outcome = by_threshold.run("text", services)
    assert outcome.flagged and outcome.categories == ("violence",)
    assert fake.requests[-1].body == {"input": "text", "model": "omni-moderation-latest"}
    per_category = check_of({"check": "moderation", "model": "m", "thresholds": {"hate": 0.05}})
    fake.enqueue(moderation_answer({"violence": 0.99, "hate": 0.1}))
    assert per_category.run("text", services).categories == ("hate",)
    providers = check_of({"check": "moderation", "model": "m"})
    fake.enqueue(moderation_answer({"violence": 0.2}, flagged=True))
    assert providers.run("text", services).flagged
    fake.enqueue(moderation_answer({"violence": 0.99}))
    assert not providers.run("text", services).flagged


def test_the_judge_retries_once_with_a_json_schema_then_fails(fake, services):
    judge = check_of({"check": "judge", "model": "gpt-4o-mini"})
    fake.enqueue(Reply(["OK"]))
    assert not judge.run("hello", services).flagged
    assert fake.requests[-1].body["messages"][1]["content"] == "<text>\nhello\n</text>"
    fake.enqueue(Reply(["Well, it depends"]))
    fake.enqueue(Reply(['{"verdict": "INAPPROPRIATE"}']))
    assert judge.run("hello", services).details["prompt"] == "classroom"
    retry = fake.requests[-1].body
    assert retry["response_format"]["json_schema"]["schema"]["properties"]["verdict"]["enum"] == [
        "OK",
        "INAPPROPRIATE",
    ]
    fake.enqueue(Reply(["Hmm"]))
    fake.enqueue(Reply(["Still hmm"]))
    with pytest.raises(CheckFailed):
        judge.run("hello", services)


def test_a_judge_group_is_answered_by_its_own_fallbacks_only(fake, services):
    judge = check_of({"check": "judge", "model": "safety-judge"})
    fake.enqueue(Reply(["INAPPROPRIATE"]))
    assert judge.run("hello", services).flagged  # the first deployment is unreachable: the second judged
    assert fake.requests[-1].body["model"] == "gpt-4o-mini"


def test_input_checks_run_concurrently_and_a_slow_one_fails_closed_or_open(fake, services):
    entry = {"check": "moderation", "model": "m", "threshold": 0.5}
    both = policy(input=[entry, {**entry, "model": "n"}])
    fake.enqueue(Reply(body=moderation_answer({"v": 0.1}).body, delay=0.4))
    fake.enqueue(Reply(body=moderation_answer({"v": 0.1}).body, delay=0.4))
    started = time.monotonic()
    assert not run_phase(both, "input", "text", services).flagged
    assert time.monotonic() - started < 0.75  # one after the other would take 0.8 s
    slow = policy(input=[{**entry, "timeout": 0.3}])
    fake.enqueue(Hang(2))
    with pytest.raises(SafetyUnavailable):
        run_phase(slow, "input", "text", services)
    lenient = policy(input=[{**entry, "timeout": 0.3}], on_error="open")
    fake.enqueue(Hang(2))
    assert not run_phase(lenient, "input", "text", services).flagged


# --- Comprehend ------------------------------------------------------------------------------


def test_comprehend_flags_at_its_threshold_in_segments_comprehend_accepts(monkeypatch):
    check = check_of({"check": "comprehend", "threshold": 0.5})
    source = {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    with FakeComprehend(toxicity=0.6, labels={"PROFANITY": 0.7, "INSULT": 0.2}) as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_COMPREHEND", fake.url)
        outcome = check.run("x" * 600, Services(None, source))  # type: ignore[arg-type]
        assert outcome.flagged and outcome.categories == ("PROFANITY",)
        sent = fake.requests[-1]
        assert sent["target"] == "Comprehend_20171127.DetectToxicContent" and sent["LanguageCode"] == "en"
        assert [len(s["Text"]) for s in sent["TextSegments"]] == [250, 250, 100]
        fake.toxicity, fake.labels = 0.1, {}
        assert not check.run("fine", Services(None, source)).flagged  # type: ignore[arg-type]
        fake.status = 500
        with pytest.raises(CheckFailed):
            check.run("fine", Services(None, source))  # type: ignore[arg-type]


# --- the stream filter -------------------------------------------------------------------------


class Verdict:
    def __init__(self, flagged):
        self.flagged = flagged

    def safety(self):
        return {"phase": "output", "blocked_by": "blocklist", "details": {}}


def chunk(text):
    data = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def test_events_of_a_chunk_holding_several_whole_events():
    assert list(split_events(chunk("a") + chunk("b") + b"data: [DONE]\n\n")) == [
        chunk("a"),
        chunk("b"),
        b"data: [DONE]\n\n",
    ]


def test_segments_end_at_sentence_ends_or_a_length_and_refused_text_is_never_sent():
    checked = []

    def check(text):
        checked.append(text)
        return Verdict("bad" in text)

    # Several events a chunk, as the relay hands over one upstream read.
    chunks = [
        chunk("One") + chunk(". Two"),
        chunk(". "),
        chunk("bad three. "),
        chunk("four."),
        b"data: [DONE]\n\n",
    ]
    sent = list(filtered(iter(chunks), check, path="/chat/completions", segment_chars=400))
    assert checked == ["One. Two", ". ", "bad three. "]
    assert b"".join(sent).startswith(chunk("One") + chunk(". Two") + chunk(". "))
    assert b"bad" not in b"".join(sent) and b"four" not in b"".join(sent)
    assert sent[-1].endswith(b"data: [DONE]\n\n") and b'"finish_reason":"content_filter"' in sent[-1]
    checked.clear()
    long = [chunk("x" * 15), chunk("y" * 15), chunk("z"), b"data: [DONE]\n\n"]
    assert b"".join(filtered(iter(long), check, path="/chat/completions", segment_chars=20)) == b"".join(long)
    assert checked == ["x" * 15 + "y" * 15, "z"]  # the rest is checked before [DONE] goes out


def test_the_filter_closes_the_providers_stream_when_it_refuses():
    closed = []

    def provider():
        try:
            yield chunk("bad. ")
            yield chunk("more. ")
        finally:
            closed.append(True)

    sent = list(filtered(provider(), lambda text: Verdict(True), path="/chat/completions", segment_chars=400))
    assert len(sent) == 1 and closed == [True]

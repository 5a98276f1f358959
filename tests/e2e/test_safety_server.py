"""Student safety with the official `openai` client against the real server and fake providers.

The fake upstream answers the safety checks' own calls (moderation, the judge) as well as the
generation: a moderation scores `violence` 0.9 for a text holding "mod-bad" and fails with 500 for
"mod-500"; an image (a `data:` URL) scores `sexual` 0.9 when its bytes hold "unsafe"; the judge
answers INAPPROPRIATE for "judge-bad". Everything else is a generation, which each test scripts
through `GENERATION` (images and transcripts through the fake's `media` state).
"""

from __future__ import annotations

import base64
import json
import subprocess

import openai
import pytest
import requests

from service.governance.key_store import hash_key
from testbed.openai_media import PNG_BYTES
from testbed.openai_upstream import Fail, Recorded, Reply, Stream
from testbed.server import GUNICORN, ROOT, SERVER_ARGS, free_port, server_env

PROVIDER_KEY = "sk-provider-key-0123456789"
STUDENT_KEY = "aip_safety-student-key-000000000000000000001"
LENIENT_KEY = "aip_safety-lenient-key-000000000000000000001"
PLAIN_KEY = "aip_safety-plain-key-00000000000000000000001"  # no policy
CACHED_KEY = "aip_safety-cached-key-0000000000000000000001"  # the students' policy and a cache
CHECKS = {
    "input": [
        {"check": "blocklist", "words": ["badword"]},
        {"check": "moderation", "model": "omni-moderation-latest", "threshold": 0.3},
        {"check": "judge", "model": "gpt-4o-mini", "prompt": "classroom"},
    ],
    "output": [{"check": "moderation", "model": "omni-moderation-latest", "threshold": 0.5}],
    "pii": "redact",
}
POLICIES = {"students": {**CHECKS, "on_error": "closed"}, "lenient": {**CHECKS, "on_error": "open"}}
GENERATION: dict[str, object] = {}


def is_judge(request: Recorded) -> bool:
    messages = (request.body or {}).get("messages") or [{}]
    return "middle-school classroom" in str(messages[0].get("content"))


def scored(category: str, score: float) -> dict:
    return {
        "flagged": score > 0.5,
        "categories": {category: score > 0.5},
        "category_scores": {category: score},
    }


def respond(request: Recorded):
    body = request.body or {}
    if request.path.endswith("/moderations"):
        moderated = body.get("input")
        if isinstance(moderated, list) and moderated[0].get("type") == "image_url":  # an image
            url = moderated[0]["image_url"]["url"]
            score = 0.9 if b"unsafe" in base64.b64decode(url.partition("base64,")[2]) else 0.0
            return Reply(
                body={"id": "modr-2", "model": body.get("model"), "results": [scored("sexual", score)]}
            )
        text = str(moderated)
        if "mod-500" in text:
            return Fail(500, "moderation is down")
        score = 0.9 if "mod-bad" in text else 0.0
        return Reply(
            body={"id": "modr-1", "model": body.get("model"), "results": [scored("violence", score)]}
        )
    if is_judge(request):
        return Reply(["INAPPROPRIATE" if "judge-bad" in body["messages"][1]["content"] else "OK"])
    return GENERATION.get("next")


@pytest.fixture(scope="module")
def server_settings():
    store = {
        "school-app": {"keys": [hash_key(STUDENT_KEY)], "safety": "students"},
        "lenient-app": {"keys": [hash_key(LENIENT_KEY)], "safety": "lenient"},
        "plain-app": {"keys": [hash_key(PLAIN_KEY)]},
        "cached-app": {"keys": [hash_key(CACHED_KEY)], "safety": "students", "cache": {"ttl_s": 600}},
    }
    return {
        "OPENAI_API_KEY": PROVIDER_KEY,
        "AIPROXY_UPSTREAM_BACKOFF": "0.01",
        "AIPROXY_CLIENT_KEYS": json.dumps(store),
        "AIPROXY_SAFETY_POLICIES": json.dumps(POLICIES),
        "LOG_FORMAT": "json",
    }


@pytest.fixture(scope="module", autouse=True)
def scripted(fake):
    fake.responder = respond
    yield
    fake.responder = None


@pytest.fixture(autouse=True)
def fresh(fake):
    GENERATION.clear()
    fake.requests.clear()
    yield
    fake.media.image_bytes, fake.media.transcript = PNG_BYTES, None


def sdk(server, key=STUDENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=20)


def generations(fake) -> list[Recorded]:
    return [r for r in fake.requests if r.path.endswith("/chat/completions") and not is_judge(r)]


def chat(server, text: str, key: str = STUDENT_KEY, **options) -> requests.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **options}
    return requests.post(
        server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=20
    )


@pytest.mark.parametrize(
    ("text", "check"), [("a badword here", "blocklist"), ("mod-bad", "moderation"), ("judge-bad", "judge")]
)
def test_a_flagged_input_is_refused_and_never_reaches_the_provider(server, fake, text, check):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(server).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    answer = refused.value.response.json()
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["code"] == "content_filter"
    assert answer["error"]["param"] == "messages"
    assert answer["safety"]["phase"] == "input"
    assert answer["safety"]["blocked_by"] == check
    assert generations(fake) == []
    if check == "blocklist":  # a local hit asks no model at all
        assert fake.requests == []


def test_an_email_address_reaches_every_provider_call_as_a_mark(server, fake):
    GENERATION["next"] = Reply(["Sure."])
    reply = sdk(server).chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Help the student."},
            {"role": "user", "content": "My e-mail is kid.name@school.org, call 555-123-4567"},
        ],
    )
    assert reply.choices[0].message.content == "Sure."
    [generation] = generations(fake)
    assert generation.body["messages"][1]["content"] == "My e-mail is [EMAIL], call [PHONE]"
    assert generation.body["messages"][0]["content"] == "Help the student."
    assert all(b"kid.name@school.org" not in r.raw and b"555-123-4567" not in r.raw for r in fake.requests)
    assert {r.path for r in fake.requests} == {"/v1/moderations", "/v1/chat/completions"}


def test_a_flagged_whole_answer_never_reaches_the_client(server, fake):
    GENERATION["next"] = Reply(["Here is mod-bad advice."])
    raw = sdk(server).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Tell me something"}]
    )
    assert raw.http_response.status_code == 200
    assert b"mod-bad" not in raw.http_response.content
    completion = raw.parse()
    assert completion.choices[0].message.content == ""
    assert completion.choices[0].finish_reason == "content_filter"
    safety = raw.http_response.json()["safety"]
    assert safety == {
        "phase": "output",
        "blocked_by": "moderation",
        "details": {"categories": ["violence"], "scores": {"violence": 0.9}},
    }
    assert completion.usage.total_tokens > 0  # the generation is still charged


def test_a_flagged_third_stream_segment_never_reaches_the_client(server, fake):
    GENERATION["next"] = Stream(["One. ", "Two. ", "Three mod-bad. ", "Four."], pause=0.05)
    with requests.post(
        server.url + "/v1/chat/completions",
        stream=True,
        json={"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Count"}]},
        headers={"Authorization": f"Bearer {STUDENT_KEY}"},
        timeout=20,
    ) as response:
        got = b"".join(response.iter_content(None))
    assert response.status_code == 200
    assert b"mod-bad" not in got and b"Four" not in got and b"Three" not in got
    events = got.split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    chunks = [json.loads(e.removeprefix(b"data: ")) for e in events[:-2]]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "One. ", "Two. ", None]
    assert all(c["id"] == "chatcmpl-fake" for c in chunks)
    assert chunks[-1]["choices"] == [{"index": 0, "finish_reason": "content_filter", "delta": {}}]
    assert chunks[-1]["safety"]["blocked_by"] == "moderation"
    # The same stream through the SDK ends as a filtered one.
    GENERATION["next"] = Stream(["One. ", "Two. ", "Three mod-bad. ", "Four."])
    stream = sdk(server).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Count"}], stream=True
    )
    parts = [(c.choices[0].delta.content, c.choices[0].finish_reason) for c in stream]
    assert "".join(text or "" for text, _ in parts) == "One. Two. "
    assert parts[-1][1] == "content_filter"


def test_a_streamed_response_is_checked_segment_by_segment(server, fake):
    GENERATION["next"] = Stream(["One. ", "Two. ", "Three mod-bad. ", "Four."])
    with sdk(server).responses.create(model="gpt-4o-mini", input="Count", stream=True) as stream:
        events = list(stream)
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["One. ", "Two. "]
    assert all("mod-bad" not in e.model_dump_json() for e in events)
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.id == "resp-fake"
    assert events[-1].response.incomplete_details.reason == "content_filter"
    # A stream that passes arrives whole, ended as the provider ended it.
    GENERATION["next"] = Stream(["One. ", "Two."])
    with sdk(server).responses.create(model="gpt-4o-mini", input="Count", stream=True) as stream:
        events = list(stream)
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["One. ", "Two."]
    assert events[-1].type == "response.completed"


def test_personal_data_is_redacted_from_embeddings_and_moderations_input(server, fake):
    client = sdk(server)
    client.embeddings.create(model="text-embedding-3-small", input=["Write to kid.name@school.org", "hello"])
    client.moderations.create(
        model="omni-moderation-latest", input=[{"type": "text", "text": "call 555-123-4567"}]
    )
    [embedded] = fake.requests_to("/embeddings")
    assert embedded.body["input"] == ["Write to [EMAIL]", "hello"]
    moderated = [r.body["input"] for r in fake.requests_to("/moderations")]
    assert [{"type": "text", "text": "call [PHONE]"}] in moderated
    assert all(b"kid.name@school.org" not in r.raw and b"555-123-4567" not in r.raw for r in fake.requests)


def test_a_failing_moderation_fails_closed_with_503_and_open_with_200(server, fake):
    GENERATION["next"] = Reply(["Fine."])
    closed = chat(server, "mod-500 please")
    assert closed.status_code == 503
    assert closed.json()["error"]["code"] == "safety_unavailable"
    assert generations(fake) == []
    opened = chat(server, "mod-500 please", key=LENIENT_KEY)
    assert opened.status_code == 200
    assert opened.json()["choices"][0]["message"]["content"] == "Fine."


def test_safety_check_names_the_check_that_flagged(server):
    def check(body):
        return requests.post(
            server.url + "/v1/safety/check", json=body, headers={"Authorization": f"Bearer {STUDENT_KEY}"}
        )

    judged = check({"text": "judge-bad", "role": "user"})
    assert judged.status_code == 200
    assert judged.json()["flagged"] is True and judged.json()["blocked_by"] == "judge"
    listed = check({"text": "badword, write to a@b.org", "policy": "lenient"}).json()
    assert listed["blocked_by"] == "blocklist" and listed["pii"] == ["email"]
    answer = check({"text": "A calm answer.", "role": "assistant"}).json()
    assert answer == {"flagged": False, "blocked_by": None, "details": {}, "pii": []}
    assert check({"text": "x", "policy": "nobody"}).json()["error"]["code"] == "policy_not_found"


def test_refusals_are_recorded_without_their_text_and_checks_charged_to_the_client(server, fake):
    assert chat(server, "a badword and judge-bad").status_code == 400
    GENERATION["next"] = Reply(["ok"])
    assert chat(server, "a kind question").status_code == 200
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    incidents = [line for line in lines if line.get("logger") == "service.safety" and "phase" in line]
    assert incidents and incidents[-1]["client"] == "school-app"
    assert incidents[-1]["check"] == "blocklist" and incidents[-1]["request_id"]
    assert all("badword" not in json.dumps(line) and "judge-bad" not in json.dumps(line) for line in lines)
    usage = [line for line in lines if line.get("purpose") == "safety"]
    assert {line["client"] for line in usage} == {"school-app", "lenient-app"}
    assert any(line.get("total_tokens") for line in usage)
    access = [line for line in lines if "SafetyChecks.input.judge.passed" in line]
    assert access and access[-1]["Safety"][0]["phase"] == "input"


# --- media under a policy (issue 31): prompts as input, images and transcripts as output ---------


def test_a_flagged_image_prompt_is_refused_before_any_generation(server, fake):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(server).images.generate(model="dall-e-3", prompt="draw mod-bad things")
    answer = refused.value.response.json()
    assert answer["error"]["code"] == "content_filter" and answer["error"]["param"] == "prompt"
    assert answer["safety"]["phase"] == "input" and answer["safety"]["blocked_by"] == "moderation"
    assert fake.requests_to("/images/generations") == []
    # Personal data in a prompt reaches the provider as its mark.
    sdk(server).images.generate(model="dall-e-3", prompt="a card for kid.name@school.org")
    assert fake.requests_to("/images/generations")[-1].body["prompt"] == "a card for [EMAIL]"


def test_a_flagged_generated_image_never_reaches_the_client(server, fake):
    fake.media.image_bytes = PNG_BYTES + b" unsafe pixels"
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(server).images.generate(model="dall-e-3", prompt="a red apple", n=2)
    raw = refused.value.response.content
    assert base64.b64encode(fake.media.image_bytes) not in raw
    answer = json.loads(raw)
    assert answer["error"]["code"] == "content_filter"
    assert answer["safety"] == {
        "phase": "output",
        "blocked_by": "moderation",
        "details": {"categories": ["sexual"], "scores": {"sexual": 0.9}, "image": 0},
    }
    assert len(fake.requests_to("/images/generations")) == 1
    checked = [r.body["input"] for r in fake.requests_to("/moderations") if isinstance(r.body["input"], list)]
    assert len(checked) == 2  # each image, as a data URL
    assert checked[0][0]["image_url"]["url"].startswith("data:image/png;base64,")
    # A safe image goes through, checked the same way.
    fake.media.image_bytes = PNG_BYTES
    image = sdk(server).images.generate(model="dall-e-3", prompt="a red apple")
    assert base64.b64decode(image.data[0].b64_json) == PNG_BYTES


def test_a_flagged_transcript_never_reaches_the_client(server, fake):
    fake.media.transcript = "A transcript full of mod-bad words."
    for stream in (False, True):
        response = requests.post(
            server.url + "/v1/audio/transcriptions",
            files={"file": ("talk.mp3", b"x" * 2000, "audio/mpeg")},
            data={"model": "gpt-4o-transcribe", "stream": str(stream).lower()},
            headers={"Authorization": f"Bearer {STUDENT_KEY}"},
            timeout=20,
        )
        assert response.status_code == 400
        assert b"mod-bad" not in response.content
        assert response.json()["safety"]["phase"] == "output"
    fake.media.transcript = "A calm transcript."
    heard = sdk(server).audio.transcriptions.create(
        model="whisper-1", file=("t.mp3", b"x" * 10, "audio/mpeg")
    )
    assert heard.text == "A calm transcript."


def test_a_client_without_a_policy_is_not_screened_on_media_routes(server, fake):
    fake.media.image_bytes = PNG_BYTES + b" unsafe pixels"
    fake.media.transcript = "mod-bad words"
    plain = sdk(server, PLAIN_KEY)
    image = plain.images.generate(model="dall-e-3", prompt="draw mod-bad things")
    assert base64.b64decode(image.data[0].b64_json) == fake.media.image_bytes
    heard = plain.audio.transcriptions.create(model="whisper-1", file=("t.mp3", b"x" * 10, "audio/mpeg"))
    assert heard.text == "mod-bad words"
    assert fake.requests_to("/moderations") == []


# --- the checks through the answer cache (issue 32) --------------------------------------------


def test_the_same_check_with_a_cache_asks_the_moderation_provider_once(server, fake):
    def check(text: str, key: str = CACHED_KEY) -> dict:
        answer = requests.post(
            server.url + "/v1/safety/check",
            json={"text": text, "role": "assistant"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=20,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    first = check("You are a helpful tutor for mod-bad students.")
    assert check("You are a helpful tutor for mod-bad students.") == first  # the same verdict
    assert first["flagged"] is True and first["blocked_by"] == "moderation"
    assert len(fake.requests_to("/moderations")) == 1
    check("You are a helpful tutor.")
    check("You are a helpful tutor.", key=STUDENT_KEY)  # a client without a cache asks every time
    check("You are a helpful tutor.", key=STUDENT_KEY)
    assert len(fake.requests_to("/moderations")) == 4
    # A failure is never kept: each check of a text the provider failed on asks again.
    asked = []
    for _ in range(2):
        failed = requests.post(
            server.url + "/v1/safety/check",
            json={"text": "mod-500", "role": "assistant"},
            headers={"Authorization": f"Bearer {CACHED_KEY}"},
            timeout=20,
        )
        assert failed.status_code == 503
        asked.append(len(fake.requests_to("/moderations")))
    assert 4 < asked[0] < asked[1]
    hits = [
        r for r in server.log_records() if r.get("cache") == "hit" and r.get("route") == "/v1/safety/check"
    ]
    assert hits and hits[-1]["client"] == "cached-app" and hits[-1]["cost_usd"] == 0


def start_and_wait(settings: dict[str, str], cwd) -> subprocess.CompletedProcess:
    env = server_env(settings, free_port())
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [GUNICORN, *SERVER_ARGS], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("policies", "store", "line"),
    [
        (
            {"students": {"input": [{"check": "profanity"}]}},
            {},
            "the safety policies in AIPROXY_SAFETY_POLICIES are not valid: policy 'students': input[0]: "
            "unknown check 'profanity'; use one of: blocklist, moderation, judge, comprehend",
        ),
        (
            {"students": {"output": [{"check": "moderation", "model": "m", "threshold": 3}]}},
            {},
            "the safety policies in AIPROXY_SAFETY_POLICIES are not valid: policy 'students': output[0] "
            "(moderation): 'threshold' must be a number from 0 to 1",
        ),
        (
            {"students": {}},
            {"web": {"keys": [hash_key(STUDENT_KEY)], "safety": "pupils"}},
            "client 'web' of the key store names the safety policy 'pupils', which AIPROXY_SAFETY_POLICIES "
            "does not define",
        ),
    ],
)
def test_start_up_refuses_a_bad_policy_with_one_line(tmp_path, policies, store, line):
    settings = {"AIPROXY_SAFETY_POLICIES": json.dumps(policies)}
    if store:
        settings["AIPROXY_CLIENT_KEYS"] = json.dumps(store)
    result = start_and_wait(settings, tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"aiproxy: configuration error: {line}"]

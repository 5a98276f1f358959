"""Gemini on Vertex AI and provider credentials per client, in real server processes: a fake Google
token endpoint issues access tokens to service accounts (google-auth signs the grant with the
account's key), a fake Vertex endpoint accepts only unexpired tokens it issued, and the official
`openai` client talks to the proxy."""

from __future__ import annotations

import hashlib
import json
import time

import openai
import pytest

from testbed.google_token import FakeGoogleToken
from testbed.openai_upstream import FakeOpenAI
from testbed.server import running_server
from tests.support.http import fetch
from tests.support.waiting import wait_until

KEYS = {name: f"aip_{name}-client-key-0123456789" for name in ("plain", "tutor", "lab", "revoked")}
DEFAULT_OPENAI_KEY = "sk-default-openai-key-vertex"
LAB_OPENAI_KEY = "sk-chat-lab-own-openai-key"
PROMPT = [{"role": "user", "content": "Say hello"}]


def key_store() -> str:
    def entry(name: str, **more: object) -> dict:
        return {"keys": [hashlib.sha256(KEYS[name].encode()).hexdigest()], **more}

    return json.dumps(
        {
            "plain": entry("plain"),
            "tutor": entry("tutor", upstream_credentials={"vertex": "vertex_sa_tutor"}, budget_usd_per_day=5),
            "lab": entry(
                "lab", upstream_credentials={"vertex": "vertex_sa_lab", "openai": "openai_key_chat_lab"}
            ),
            "revoked": entry("revoked", upstream_credentials={"vertex": "vertex_sa_revoked"}),
        }
    )


def vertex_settings(google: FakeGoogleToken, vertex: FakeOpenAI, openai_fake: FakeOpenAI) -> dict[str, str]:
    upstream = {
        "type": "vertex",
        "project": "fake-project",
        "location": "us-central1",
        "credentials_secret": "vertex_service_account",
        "base_url": vertex.url,  # the fake stands in for the endpoint project and location derive
    }
    return {
        "LOG_FORMAT": "json",
        "OPENAI_BASE_URL": openai_fake.url,
        "OPENAI_API_KEY": DEFAULT_OPENAI_KEY,
        "OPENAI_KEY_CHAT_LAB": LAB_OPENAI_KEY,
        "AIPROXY_UPSTREAMS": json.dumps({"vertex": upstream}),
        "AIPROXY_CLIENT_KEYS": key_store(),
        "VERTEX_SERVICE_ACCOUNT": google.service_account("proxy"),
        "VERTEX_SA_TUTOR": google.service_account("tutor"),
        "VERTEX_SA_LAB": google.service_account("lab"),
        "VERTEX_SA_REVOKED": google.service_account("revoked"),
        "AIPROXY_UPSTREAM_RETRIES": "0",
    }


@pytest.fixture(scope="module")
def setup():
    with (
        FakeGoogleToken(expires_in=3600) as google,
        FakeOpenAI(bearer=google.accepts) as vertex,
        FakeOpenAI(bearer={DEFAULT_OPENAI_KEY, LAB_OPENAI_KEY}.__contains__) as openai_fake,
        running_server(vertex_settings(google, vertex, openai_fake)) as server,
    ):
        yield google, vertex, openai_fake, server


def client(server, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEYS[name], max_retries=0)


def test_a_chat_and_a_stream_through_vertex_use_one_token_of_the_service_account(setup):
    google, vertex, _, server = setup
    proxy = client(server, "plain")
    for _ in range(3):
        raw = proxy.chat.completions.with_raw_response.create(
            model="vertex/gemini-2.5-flash", messages=PROMPT
        )
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-aiproxy-deployment"] == "vertex/google/gemini-2.5-flash"
    stream = proxy.chat.completions.create(model="vertex/gemini-2.5-flash", messages=PROMPT, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    sent = vertex.requests_to("/chat/completions")[-4:]
    assert [r.body["model"] for r in sent] == ["google/gemini-2.5-flash"] * 4  # Vertex's publisher/model
    tokens = {r.headers["authorization"].removeprefix("Bearer ") for r in sent}
    assert len(tokens) == 1 and google.owner(tokens.pop()) == "proxy"
    assert google.fetches("proxy") == 1  # one token for every request of the process
    records = [
        r for r in server.log_records() if r.get("message", "").startswith("usage") and r["client"] == "plain"
    ]
    assert records and all(r["credential"] == "vertex_service_account" for r in records)
    assert {(r["model_asked"], r["deployment"], r["served_model"]) for r in records} == {
        ("vertex/gemini-2.5-flash", "vertex/google/gemini-2.5-flash", "google/gemini-2.5-flash")
    }
    assert "ya29." not in server.log() and "PRIVATE KEY" not in server.log()  # never logged


def test_two_clients_with_their_own_credentials_reach_the_provider_with_different_keys(setup):
    google, vertex, openai_fake, server = setup
    for name in ("tutor", "lab"):
        client(server, name).chat.completions.create(model="vertex/gemini-2.5-flash", messages=PROMPT)
    tutor, lab = (r.headers["authorization"].removeprefix("Bearer ") for r in vertex.requests[-2:])
    assert (google.owner(tutor), google.owner(lab)) == ("tutor", "lab")
    client(server, "lab").chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    client(server, "plain").chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert [r.headers["authorization"] for r in openai_fake.requests[-2:]] == [
        f"Bearer {LAB_OPENAI_KEY}",
        f"Bearer {DEFAULT_OPENAI_KEY}",
    ]
    expected = {
        ("tutor", "vertex", "vertex_sa_tutor"),
        ("lab", "vertex", "vertex_sa_lab"),
        ("lab", "openai", "openai_key_chat_lab"),
        ("plain", "openai", "openai_api_key"),
    }

    def paid() -> set[tuple[str, str, str]]:
        usage = [r for r in server.log_records() if r.get("message", "").startswith("usage")]
        return {(r["client"], r["deployment"].partition("/")[0], r["credential"]) for r in usage}

    # Records are written once each answer has gone out: the last may follow its answer a little.
    wait_until(lambda: expected <= paid(), timeout=5)
    access = [r for r in server.log_records() if r.get("Credential") == "vertex_sa_tutor"]
    assert access and access[-1]["Client"] == "tutor"  # EMF: cost by credential
    # The tutor's budget counts its own credential's calls, as any other.
    answer = fetch(server.url + "/v1/limits", None, {"Authorization": f"Bearer {KEYS['tutor']}"})
    assert json.loads(answer.body)["usage"]["spent_usd_today"] > 0


def test_a_refused_service_account_is_the_proxys_502_never_the_callers_401(setup):
    google, _, _, server = setup
    google.refuse("revoked")
    with pytest.raises(openai.APIStatusError) as raised:
        client(server, "revoked").chat.completions.create(model="vertex/gemini-2.5-flash", messages=PROMPT)
    assert not isinstance(raised.value, openai.AuthenticationError)
    assert raised.value.status_code == 502
    assert raised.value.body["code"] == "provider_auth_failed"
    assert "PRIVATE KEY" not in server.log()


def test_the_token_is_fetched_again_once_it_nears_its_expiry():
    with (
        FakeGoogleToken(expires_in=3) as google,
        FakeOpenAI(bearer=google.accepts) as vertex,
        FakeOpenAI(bearer={DEFAULT_OPENAI_KEY}.__contains__) as openai_fake,
    ):
        settings = vertex_settings(google, vertex, openai_fake)
        with running_server(settings) as server:
            proxy = client(server, "plain")
            for _ in range(2):
                proxy.chat.completions.create(model="vertex/gemini-2.5-flash", messages=PROMPT)
            assert google.fetches("proxy") == 1
            time.sleep(2)  # a 3 s token is renewed halfway through its life
            proxy.chat.completions.create(model="vertex/gemini-2.5-flash", messages=PROMPT)
            assert google.fetches("proxy") == 2
            first, *_, last = vertex.requests
            assert first.headers["authorization"] != last.headers["authorization"]

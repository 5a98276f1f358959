"""An upstream that refuses the proxy's own provider key: the operators' problem, never the caller's.

The real server holds a key the fake upstream refuses (the fake answers 401 quoting the key,
masked, as OpenAI does). Clients of the /v1 routes get a 502 that says so, which the SDKs never
take for a wrong key of their own; the proxy logs an ERROR and reports it to Honeybadger; no part
of the key appears anywhere. A provider key the caller brings itself on the legacy routes is the
caller's business: its refusal is relayed (/test/openai) or the documented 400 (/assessment).
"""

from __future__ import annotations

import json

import openai
import pytest

from testbed.honeybadger import HoneybadgerCatcher
from testbed.openai_upstream import FakeOpenAI
from testbed.server import running_server
from tests.support.assessment import PROMPT, RUBRIC
from tests.support.http import fetch

RIGHT_KEY = "sk-the-key-the-upstream-wants-0001"
REFUSED_KEY = "sk-proxy-REFUSEDKEY-middle-Q7W9"
# What the fake's 401 quotes (the first and last four characters), and the key's own middle.
KEY_PARTS = (REFUSED_KEY, REFUSED_KEY[:8], REFUSED_KEY[-4:], "REFUSEDKEY")
CALLERS_KEY = "sk-callers-own-wrong-key-Z3X5"
CODE = "let x = 1;\nif (x > 0) { console.log(x); }\n"


def post_json(url: str, body: dict):
    return fetch(url, json.dumps(body).encode(), {"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def setup():
    with (
        HoneybadgerCatcher() as catcher,
        FakeOpenAI(api_key=RIGHT_KEY) as fake,
        running_server(
            {
                "OPENAI_BASE_URL": fake.url,
                "OPENAI_API_KEY": REFUSED_KEY,
                "LOG_FORMAT": "json",
                "HONEYBADGER_API_KEY": "hbp_provider_key_refused_test",
                "HONEYBADGER_ENDPOINT": catcher.url,
                "HONEYBADGER_FORCE_SYNC": "1",  # reported before the answer is sent
            }
        ) as server,
    ):
        yield server, fake, catcher


@pytest.fixture(scope="module")
def sdk(setup):
    server = setup[0]
    with openai.OpenAI(base_url=server.url + "/v1", api_key="client-key", max_retries=0, timeout=20) as sdk:
        yield sdk


CALLS = {
    "chat": lambda sdk: sdk.chat.completions.create(model="gpt-4o-mini", messages=[]),
    "stream": lambda sdk: sdk.chat.completions.create(model="gpt-4o-mini", messages=[], stream=True),
    "embeddings": lambda sdk: sdk.embeddings.create(model="text-embedding-3-small", input="x"),
    "models": lambda sdk: sdk.models.list(),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_the_sdk_gets_a_502_that_names_the_operators_not_an_authentication_error(sdk, setup, call):
    server, fake, catcher = setup
    reported = len(catcher.notices)
    with pytest.raises(openai.APIStatusError) as caught:
        call(sdk)
    error = caught.value
    assert not isinstance(error, openai.AuthenticationError)  # the caller's key is fine
    assert isinstance(error, openai.InternalServerError)
    assert error.status_code == 502
    assert error.code == "provider_auth_failed"
    assert "operators must fix its provider key" in error.message
    assert fake.requests[-1].headers["authorization"] == f"Bearer {REFUSED_KEY}"  # it was refused

    answered = error.response.text
    assert "Incorrect API key" not in answered  # the upstream's message, which quotes the key
    for part in KEY_PARTS:
        assert part not in answered

    # An ERROR line, reported to Honeybadger, naming the upstream and never the key.
    request_id = error.response.headers["x-request-id"]
    errors = [r for r in server.log_records() if r["level"] == "ERROR" and r.get("request_id") == request_id]
    assert ["refused the configured provider key" in r["message"] for r in errors] == [True]
    notices = catcher.wait_for(reported + 1)
    assert notices[-1]["request"]["context"]["request_id"] == request_id
    assert "refused the configured provider key" in notices[-1]["error"]["message"]


def test_no_part_of_the_refused_key_is_in_the_log_or_the_reports(setup):
    server, _, catcher = setup
    log, reports = server.log(), catcher.raw()
    for part in KEY_PARTS:
        assert part not in log
        assert part not in reports


def test_a_key_the_caller_sent_to_test_openai_gets_the_providers_own_401(setup):
    server, fake, catcher = setup
    reported = len(catcher.notices)
    response = post_json(server.url + "/test/openai", {"api-key": CALLERS_KEY})
    assert response.status == 401
    error = json.loads(response.body)["error"]
    assert (error["code"], error["type"]) == ("invalid_api_key", "invalid_request_error")
    assert error["message"].startswith("Incorrect API key provided: sk-c")  # theirs, as the fake masked it
    assert CALLERS_KEY not in response.body.decode()
    assert fake.requests[-1].headers["authorization"] == f"Bearer {CALLERS_KEY}"
    assert len(catcher.notices) == reported  # the caller's key: nothing for the operators


def test_a_key_the_caller_sent_to_assessment_gets_the_documented_400(setup):
    server, fake, catcher = setup
    reported = len(catcher.notices)
    body = {"code": CODE, "prompt": PROMPT, "rubric": RUBRIC, "api-key": CALLERS_KEY}
    response = post_json(server.url + "/assessment", body)
    assert response.status == 400
    error = json.loads(response.body)["error"]
    assert error["message"].startswith("The model's provider rejected the request: Incorrect API key")
    assert CALLERS_KEY not in response.body.decode()
    assert fake.requests[-1].headers["authorization"] == f"Bearer {CALLERS_KEY}"
    assert len(catcher.notices) == reported


def test_assessment_with_the_refused_configured_key_is_a_502_for_the_operators(setup):
    server, _, catcher = setup
    reported = len(catcher.notices)
    body = {"code": CODE, "prompt": PROMPT, "rubric": RUBRIC}
    response = post_json(server.url + "/assessment", body)
    assert response.status == 502
    assert json.loads(response.body)["error"]["code"] == "provider_auth_failed"
    assert len(catcher.wait_for(reported + 1)) == reported + 1
    for part in KEY_PARTS:
        assert part not in response.body.decode()

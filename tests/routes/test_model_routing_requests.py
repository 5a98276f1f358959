"""Model routing through the app: named upstreams, model groups with fallback and cooldown, the
original service's `bedrock.` names, against several fake upstreams and the fake Bedrock runtime."""

from __future__ import annotations

import json
import logging
import time

import pytest

from service.config.setting import SettingsError
from testbed.bedrock_runtime import Answer, FakeBedrock
from testbed.openai_upstream import Fail, FakeOpenAI, Hang, Reply, Stream
from testbed.server import free_port
from tests.support.app import make_app
from tests.support.assessment import PROMPT, RUBRIC, tsv_answer

OPENAI_KEY = "sk-default-upstream-key-0001"
AZURE_KEY = "azure-key-000000000000000001"
CHAT = {"messages": [{"role": "user", "content": "Say hi"}]}


@pytest.fixture(scope="module")
def bedrock():
    with FakeBedrock() as fake:
        yield fake


@pytest.fixture
def azure():
    with FakeOpenAI() as fake:
        yield fake


def routed_app(default: FakeOpenAI, azure: FakeOpenAI, bedrock: FakeBedrock | None = None, **settings):
    upstreams = {
        "azure": {
            "base_url": azure.url,
            "key_env": "AZURE_OPENAI_KEY",
            "key_header": "api-key",
            "query": {"api-version": "2024-10-21"},
            "headers": {"x-ms-client": "aiproxy"},
        }
    }
    values = {
        "OPENAI_BASE_URL": default.url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "AZURE_OPENAI_KEY": AZURE_KEY,
        "AIPROXY_UPSTREAMS": json.dumps(upstreams),
        "AIPROXY_UPSTREAM_RETRIES": "0",
        "AIPROXY_UPSTREAM_TIMEOUT": "5",
        "AIPROXY_COOLDOWN_SECONDS": "30",
    }
    if bedrock is not None:
        values.update(
            AWS_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
            AWS_SECRET_ACCESS_KEY="not-a-real-secret",
            AWS_ENDPOINT_URL_BEDROCK_RUNTIME=bedrock.url,
        )
    values.update(settings)
    return make_app(**values).test_client()


def grouped(default, azure, bedrock=None, group=None, **settings):
    group = group or ["azure/gpt-4o", "gpt-4o-mini"]
    return routed_app(
        default, azure, bedrock, AIPROXY_MODEL_ALIASES=json.dumps({"grader": group}), **settings
    )


# --- named upstreams ---------------------------------------------------------------------------


def test_a_named_upstream_gets_its_model_its_key_header_and_its_query(fake_openai, azure):
    client = routed_app(fake_openai, azure)
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "azure/gpt-4o"})
    assert response.status_code == 200
    assert response.headers["x-aiproxy-deployment"] == "azure/gpt-4o"
    [sent] = azure.requests
    assert sent.body["model"] == "gpt-4o"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == AZURE_KEY and "authorization" not in sent.headers
    assert sent.headers["x-ms-client"] == "aiproxy"
    assert fake_openai.requests == []


def test_other_models_slashes_included_go_to_the_default_upstream_unchanged(fake_openai, azure):
    client = routed_app(fake_openai, azure)
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "meta-llama/Llama-3.1-8B"})
    assert response.status_code == 200
    assert fake_openai.requests[-1].body["model"] == "meta-llama/Llama-3.1-8B"
    assert response.headers["x-aiproxy-deployment"] == "openai/meta-llama/Llama-3.1-8B"
    assert azure.requests == []


def test_while_the_default_is_openai_an_unknown_upstream_name_is_a_400_naming_it(azure):
    client = make_app(
        OPENAI_API_KEY=OPENAI_KEY,  # OPENAI_BASE_URL's default: OpenAI itself (nothing is sent)
        AIPROXY_UPSTREAMS=json.dumps({"azure": {"base_url": azure.url, "key_env": "AZURE_OPENAI_KEY"}}),
    ).test_client()
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "azue/gpt-4o"})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert "'azue'" in error["message"] and "azure" in error["message"]
    assert (error["param"], error["code"]) == ("model", "model_not_found")


def test_the_model_list_has_every_upstreams_models_and_leaves_out_one_that_fails(fake_openai, azure, caplog):
    client = routed_app(fake_openai, azure)
    ids = [m["id"] for m in client.get("/v1/models").get_json()["data"]]
    assert "gpt-4o-mini" in ids and "azure/gpt-4o-mini" in ids
    azure.enqueue(Fail(500, "down"), path="/models")
    with caplog.at_level(logging.WARNING):
        listed = client.get("/v1/models")
    assert listed.status_code == 200
    ids = [m["id"] for m in listed.get_json()["data"]]
    assert "gpt-4o-mini" in ids and not any(i.startswith("azure/") for i in ids)
    assert any("azure" in r.getMessage() and "left out" in r.getMessage() for r in caplog.records)


def test_original_clients_bedrock_dot_names_reach_bedrock(fake_openai, azure, bedrock):
    client = routed_app(fake_openai, azure, bedrock)
    bedrock.enqueue(Answer("Hi there"))
    model = "bedrock.us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    response = client.post("/v1/chat/completions", json={**CHAT, "model": model})
    assert response.status_code == 200
    assert bedrock.requests[-1].model_id == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert response.headers["x-aiproxy-deployment"] == "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert fake_openai.requests == [] and azure.requests == []


# --- model groups ------------------------------------------------------------------------------


FALLBACKS = {
    "429": Fail(429, "slow down"),
    "500": Fail(500, "boom"),
    "502": Fail(502, "bad gateway"),
    "503": Fail(503, "overloaded"),
    "504": Fail(504, "gateway timeout"),
    "timeout": Hang(10),
}


@pytest.mark.parametrize("failure", FALLBACKS.values(), ids=FALLBACKS.keys())
def test_a_group_falls_back_on_throttling_server_errors_and_timeouts(fake_openai, azure, failure, caplog):
    client = grouped(fake_openai, azure, AIPROXY_UPSTREAM_TIMEOUT="0.5")
    azure.enqueue(failure)
    fake_openai.enqueue(Reply(["from the second deployment"]))
    with caplog.at_level(logging.INFO, logger="service.usage"):
        response = client.post("/v1/chat/completions", json={**CHAT, "model": "grader"}, buffered=True)
    assert response.status_code == 200
    assert response.get_json()["choices"][0]["message"]["content"] == "from the second deployment"
    assert response.headers["x-aiproxy-deployment"] == "openai/gpt-4o-mini"
    assert response.get_json()["model"] == "gpt-4o-mini"  # what the deployment said
    records = [r for r in caplog.records if r.name == "service.usage"]
    assert [(r.deployment, r.status) for r in records][-1] == ("openai/gpt-4o-mini", 200)
    assert records[0].deployment == "azure/gpt-4o" and records[0].error


def test_an_unreachable_deployment_is_passed_over(fake_openai):
    upstreams = {"azure": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "key_env": "AZURE_OPENAI_KEY"}}
    client = make_app(
        OPENAI_BASE_URL=fake_openai.url,
        OPENAI_API_KEY=OPENAI_KEY,
        AZURE_OPENAI_KEY=AZURE_KEY,
        AIPROXY_UPSTREAMS=json.dumps(upstreams),
        AIPROXY_MODEL_ALIASES=json.dumps({"grader": ["azure/gpt-4o", "gpt-4o-mini"]}),
    ).test_client()
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "grader"})
    assert response.status_code == 200
    assert response.headers["x-aiproxy-deployment"] == "openai/gpt-4o-mini"


def test_a_group_never_falls_back_on_a_refusal_of_the_request(fake_openai, azure):
    client = grouped(fake_openai, azure)
    azure.enqueue(Fail(400, "Invalid value for 'temperature'", code="invalid_value"))
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "grader", "temperature": 9})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_value"
    assert fake_openai.requests == []


def test_a_failed_deployment_cools_down_and_comes_back(fake_openai, azure):
    client = grouped(fake_openai, azure, AIPROXY_COOLDOWN_SECONDS="1")
    azure.enqueue(Fail(503, "overloaded"))
    assert client.post("/v1/chat/completions", json={**CHAT, "model": "grader"}).status_code == 200
    assert len(azure.requests) == 1
    for _ in range(3):  # passed over while it cools down: no request waits on it
        answer = client.post("/v1/chat/completions", json={**CHAT, "model": "grader"})
        assert answer.headers["x-aiproxy-deployment"] == "openai/gpt-4o-mini"
    assert len(azure.requests) == 1
    time.sleep(1.1)
    answer = client.post("/v1/chat/completions", json={**CHAT, "model": "grader"})
    assert answer.headers["x-aiproxy-deployment"] == "azure/gpt-4o"  # back first after its cooldown


def test_a_deployments_retry_after_sets_its_cooldown(fake_openai, azure):
    client = grouped(fake_openai, azure, AIPROXY_COOLDOWN_SECONDS="600")
    azure.enqueue(Fail(429, "slow down", headers={"Retry-After": "1"}))
    client.post("/v1/chat/completions", json={**CHAT, "model": "grader"})
    time.sleep(1.1)
    answer = client.post("/v1/chat/completions", json={**CHAT, "model": "grader"})
    assert answer.headers["x-aiproxy-deployment"] == "azure/gpt-4o"


def test_when_every_deployment_fails_the_answer_names_each_failure(fake_openai, azure):
    client = grouped(fake_openai, azure)
    azure.enqueue(Fail(503, "azure is overloaded"))
    fake_openai.enqueue(Fail(502, "openai bad gateway"))
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "grader"})
    assert response.status_code == 502  # the last failure's status
    message = response.get_json()["error"]["message"]
    assert "azure/gpt-4o: azure is overloaded" in message
    assert "openai/gpt-4o-mini: openai bad gateway" in message


def test_a_stream_falls_back_before_its_first_byte_only(fake_openai, azure):
    client = grouped(fake_openai, azure)
    azure.enqueue(Fail(503, "overloaded"))
    fake_openai.enqueue(Stream(["Hel", "lo"]))
    opened = client.post("/v1/chat/completions", json={**CHAT, "model": "grader", "stream": True})
    assert opened.status_code == 200 and "data: [DONE]" in opened.get_data(as_text=True)
    assert opened.headers["x-aiproxy-deployment"] == "openai/gpt-4o-mini"

    client = grouped(fake_openai, azure)
    azure.enqueue(Stream(["a", "b", "c"], close_after=1))  # fails after its first byte
    before = len(fake_openai.requests)
    cut = client.post("/v1/chat/completions", json={**CHAT, "model": "grader", "stream": True})
    text = cut.get_data(as_text=True)
    assert cut.headers["x-aiproxy-deployment"] == "azure/gpt-4o"
    assert '"error"' in text.splitlines()[-2] or '"error"' in text
    assert len(fake_openai.requests) == before  # no second deployment once bytes flowed


def test_weights_spread_requests_over_deployments_of_equal_rank(fake_openai, azure):
    group = [[{"model": "azure/gpt-4o", "weight": 3}, {"model": "gpt-4o-mini", "weight": 1}]]
    client = grouped(fake_openai, azure, group=group)
    served = [
        client.post("/v1/chat/completions", json={**CHAT, "model": "grader"}).headers["x-aiproxy-deployment"]
        for _ in range(80)
    ]
    share = served.count("azure/gpt-4o") / len(served)
    assert 0.55 < share < 0.92, share  # 3 to 1: about three quarters


# --- routing by region ----------------------------------------------------------------------------

REGION_HEADER = "x-amzn-waf-aiproxy-region"
US_FIRST = [{"model": "azure/gpt-4o", "regions": ["US"]}, "gpt-4o-mini"]


def served_from(client, headers=None, model="grader"):
    answer = client.post("/v1/chat/completions", json={**CHAT, "model": model}, headers=headers or {})
    answer.close()  # the usage record is written once the answer is closed
    return answer.status_code, answer.headers.get("x-aiproxy-deployment"), answer.get_json()


def test_a_deployment_for_some_regions_serves_only_requests_from_them(fake_openai, azure, caplog):
    caplog.set_level(logging.INFO, logger="service.usage")
    client = grouped(fake_openai, azure, group=US_FIRST, AIPROXY_REGION_HEADER=REGION_HEADER)
    assert served_from(client, {REGION_HEADER: "DE"})[:2] == (200, "openai/gpt-4o-mini")
    assert served_from(client, {REGION_HEADER: "US"})[:2] == (200, "azure/gpt-4o")
    assert served_from(client, {REGION_HEADER: "us"})[:2] == (200, "azure/gpt-4o")
    # No region known (no header, or not a country code): only deployments without regions.
    assert served_from(client)[:2] == (200, "openai/gpt-4o-mini")
    assert served_from(client, {REGION_HEADER: "United States"})[:2] == (200, "openai/gpt-4o-mini")
    usage = [r for r in caplog.records if r.name == "service.usage"]
    records = [(getattr(r, "region", None), r.deployment) for r in usage]
    assert records[:2] == [("DE", "openai/gpt-4o-mini"), ("US", "azure/gpt-4o")]
    assert records[3][0] is None


def test_without_a_region_header_setting_the_header_is_ignored(fake_openai, azure):
    client = grouped(fake_openai, azure, group=US_FIRST)
    assert served_from(client, {REGION_HEADER: "US"})[:2] == (200, "openai/gpt-4o-mini")
    assert len(azure.requests) == 0


def test_an_end_user_tokens_region_claim_decides_over_the_header(fake_openai, azure):
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from service.governance.key_store import hash_key

    signing = ed25519.Ed25519PrivateKey.generate()
    public = signing.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tokens = {"public_keys": [public.decode()], "algorithms": ["EdDSA"], "audience": "aiproxy"}
    tokens["claims"] = {"region": "country"}
    store = {
        "dashboard": {"keys": [hash_key("aip_region-claim-key-0000000000000001")], "end_user_tokens": tokens}
    }
    client = grouped(
        fake_openai,
        azure,
        group=US_FIRST,
        AIPROXY_REGION_HEADER=REGION_HEADER,
        AIPROXY_CLIENT_KEYS=json.dumps(store),
        AIPROXY_END_USER_HASH_KEY="region-claim-hash-key",
    )

    def token(**claims):
        now = int(time.time())
        payload = {"iss": "dashboard", "sub": "student-1", "aud": "aiproxy", "iat": now, "exp": now + 60}
        return jwt.encode({**payload, **claims}, signing, algorithm="EdDSA")

    def asked(bearer, region_header):
        return served_from(client, {"Authorization": f"Bearer {bearer}", REGION_HEADER: region_header})[:2]

    # The issuer says where its student is: a header saying otherwise does not move them.
    assert asked(token(country="de"), "US") == (200, "openai/gpt-4o-mini")
    assert asked(token(country="US"), "DE") == (200, "azure/gpt-4o")
    # No (usable) claim: the header decides, as for any request.
    assert asked(token(), "US") == (200, "azure/gpt-4o")
    assert asked(token(country="Germany"), "DE") == (200, "openai/gpt-4o-mini")


def test_excluded_regions_are_served_by_the_next_deployment(fake_openai, azure):
    group = [{"model": "azure/gpt-4o", "exclude_regions": ["de", "FR"]}, "gpt-4o-mini"]
    client = grouped(fake_openai, azure, group=group, AIPROXY_REGION_HEADER=REGION_HEADER)
    assert served_from(client, {REGION_HEADER: "FR"})[1] == "openai/gpt-4o-mini"
    assert served_from(client, {REGION_HEADER: "BR"})[1] == "azure/gpt-4o"
    assert served_from(client)[1] == "azure/gpt-4o"  # unknown is not excluded


def test_a_group_with_no_deployment_for_the_region_is_a_403_naming_it(fake_openai, azure):
    group = [{"model": "azure/gpt-4o", "regions": ["US", "CA"]}]
    client = grouped(fake_openai, azure, group=group, AIPROXY_REGION_HEADER=REGION_HEADER)
    status, _, body = served_from(client, {REGION_HEADER: "DE"})
    assert status == 403
    assert body["error"]["code"] == "model_not_available_in_region"
    assert "'DE'" in body["error"]["message"]
    assert len(azure.requests) == 0


@pytest.mark.parametrize(
    "target",
    [
        {"model": "gpt-4o", "regions": []},
        {"model": "gpt-4o", "regions": ["USA"]},
        {"model": "gpt-4o", "regions": "US"},
        {"model": "gpt-4o", "regions": ["US"], "exclude_regions": ["DE"]},
    ],
)
def test_regions_that_are_not_country_codes_stop_start_up(fake_openai, azure, target):
    with pytest.raises(SettingsError, match="AIPROXY_MODEL_ALIASES"):
        grouped(fake_openai, azure, group=[target, "gpt-4o-mini"])


def test_assessment_uses_model_groups(fake_openai, azure):
    client = grouped(fake_openai, azure)
    azure.enqueue(Fail(503, "overloaded"))
    fake_openai.enqueue(Reply([tsv_answer(*(["Convincing Evidence"] * 4))]))
    form = {"code": "var x = 1;", "prompt": PROMPT, "rubric": RUBRIC, "model": "grader"}
    response = client.post("/assessment", data=form)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["metadata"]["agent"] == "openai"
    assert fake_openai.requests[-1].body["model"] == "gpt-4o-mini"


def test_a_group_may_mix_bedrock_and_upstreams(fake_openai, azure, bedrock):
    group = ["bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "gpt-4o-mini"]
    client = grouped(fake_openai, azure, bedrock, group=group)
    from testbed.bedrock_runtime import Fail as BedrockFail

    bedrock.enqueue(BedrockFail("ThrottlingException", "Too many requests"))
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "grader"})
    assert response.status_code == 200
    assert response.headers["x-aiproxy-deployment"] == "openai/gpt-4o-mini"


def test_an_alias_naming_an_unknown_upstream_stops_start_up(azure):
    from service.config.setting import SettingsError

    with pytest.raises(SettingsError) as refused:
        make_app(
            AIPROXY_UPSTREAMS=json.dumps({"azure": {"base_url": azure.url}}),
            AIPROXY_MODEL_ALIASES=json.dumps({"grader": ["azrue/gpt-4o", "gpt-4o"]}),
        )
    assert "azrue" in str(refused.value) and "\n" not in str(refused.value)

"""Client authentication and per-client limits on the app's routes (Flask test client)."""

import io
import json
import logging

import pytest

from service.governance.key_store import KeyStoreError, hash_key
from service.ops.observability import configure_logging
from tests.support.app import make_app

WEB_KEY = "aip_route-test-web-key-000000000000000000001"
WEB_KEY_2 = "aip_route-test-web-key-000000000000000000002"
BATCH_KEY = "aip_route-test-batch-key-0000000000000000003"
WRONG_KEY = "aip_route-test-wrong-key-0000000000000000004"
STORE = {
    "web": {"keys": [hash_key(WEB_KEY), hash_key(WEB_KEY_2)]},
    "batch": {"keys": [hash_key(BATCH_KEY)], "rpm": 3, "max_concurrent": 2},
}


def keyed_app(store=None, **settings):
    return make_app(AIPROXY_CLIENT_KEYS=json.dumps(STORE if store is None else store), **settings)


@pytest.fixture
def client():
    return keyed_app().test_client()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_health_check_needs_no_key(client):
    assert client.get("/").status_code == 200
    assert client.head("/").status_code == 200


@pytest.mark.parametrize(
    "route", ["/test", "/test/429", "/test/error", "/openapi.json", "/v1/models", "/nowhere"]
)
def test_every_other_route_needs_a_key(client, route):
    response = client.get(route)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {WEB_KEY}",
        f"Token {WEB_KEY}",
        f"Bearer {WRONG_KEY}",
        WRONG_KEY,
        f"Bearer {WEB_KEY}x",
        f"Bearer {hash_key(WEB_KEY)}",  # the stored hash is not a key
        "Bearer " + "a" * 5000,
    ],
)
def test_missing_malformed_and_wrong_keys_get_one_and_the_same_401(client, authorization):
    headers = {"X-Request-Id": "req-auth-1"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = client.get("/test", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.headers["X-Request-Id"] == "req-auth-1"
    assert response.get_json() == {
        "error": {
            "message": "Missing or invalid client key. Send the key the proxy's operators gave you as "
            "'Authorization: Bearer <key>'.",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    body = response.get_data(as_text=True)
    assert WEB_KEY not in body and WRONG_KEY not in body


@pytest.mark.parametrize(
    "authorization", [f"Bearer {WEB_KEY}", f"bearer {WEB_KEY_2}", WEB_KEY, f"  {WEB_KEY_2}  "]
)
def test_a_valid_key_as_bearer_or_bare_value_is_accepted(client, authorization):
    response = client.get("/test", headers={"Authorization": authorization})
    assert response.status_code == 200
    assert response.get_json() == {}


def test_unknown_routes_answer_404_once_authenticated(client):
    assert client.get("/nowhere", headers=bearer(WEB_KEY)).status_code == 404


def test_log_lines_name_the_client_and_never_the_key():
    app = keyed_app()
    logs = io.StringIO()
    configure_logging("INFO", "json", stream=logs)
    client = app.test_client()
    client.get("/test/error", headers={**bearer(WEB_KEY), "X-Request-Id": "req-web"}, buffered=True)
    client.get("/test", headers={**bearer(WRONG_KEY), "X-Request-Id": "req-wrong"}, buffered=True)
    client.get("/test", headers={"X-Request-Id": "req-none"}, buffered=True)
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    by_request = {
        rid: [line for line in lines if line["request_id"] == rid] for rid in ("req-web", "req-wrong")
    }
    assert {line["client"] for line in by_request["req-web"]} == {"web"}
    assert {line["message"] for line in by_request["req-web"]} >= {"GET /test/error 200"}
    assert any(line["level"] == "ERROR" for line in by_request["req-web"])
    assert {line["client"] for line in by_request["req-wrong"]} == {"anonymous"}
    assert any(line["message"] == "GET /test 401" for line in by_request["req-wrong"])
    text = logs.getvalue()
    for secret in (WEB_KEY, WRONG_KEY, hash_key(WEB_KEY), hash_key(WRONG_KEY)):
        assert secret not in text


def test_over_rpm_gets_429_with_retry_after_and_other_clients_are_not_affected(client):
    for _ in range(3):
        assert client.get("/test", headers=bearer(BATCH_KEY), buffered=True).status_code == 200
    refused = client.get("/test", headers=bearer(BATCH_KEY), buffered=True)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.get_json()["error"]["type"] == "rate_limit_error"
    assert "3 requests a minute" in refused.get_json()["error"]["message"]
    for _ in range(5):
        assert client.get("/test", headers=bearer(WEB_KEY), buffered=True).status_code == 200


def test_reading_its_limits_does_not_use_up_a_clients_requests(client):
    for _ in range(10):  # more than its rpm of 3
        limits = client.get("/v1/limits", headers=bearer(BATCH_KEY), buffered=True)
        assert limits.status_code == 200
        assert "x-ratelimit-remaining-requests" not in limits.headers
    for _ in range(3):
        assert client.get("/test", headers=bearer(BATCH_KEY), buffered=True).status_code == 200
    assert client.get("/test", headers=bearer(BATCH_KEY), buffered=True).status_code == 429
    # Its rpm is used up, and reading its limits still answers, saying so.
    read = client.get("/v1/limits", headers=bearer(BATCH_KEY), buffered=True).get_json()
    assert read["usage"]["requests_last_minute"] == 3
    assert read["remaining"]["requests_this_minute"] == 0


def test_reading_limits_is_bounded_on_its_own_count(client):
    from service.edge.routes.limits import READS_PER_MINUTE

    for _ in range(READS_PER_MINUTE):
        assert client.get("/v1/limits", headers=bearer(WEB_KEY), buffered=True).status_code == 200
    refused = client.get("/v1/limits", headers=bearer(WEB_KEY), buffered=True)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert f"read its limits {READS_PER_MINUTE} times" in refused.get_json()["error"]["message"]
    assert client.get("/test", headers=bearer(WEB_KEY), buffered=True).status_code == 200
    assert client.get("/v1/limits", headers=bearer(BATCH_KEY), buffered=True).status_code == 200
    assert client.get("/v1/limits").status_code == 401  # still needs a key


def test_a_max_tokens_of_thousands_of_digits_is_refused_over_tpm_not_a_500():
    store = {"tight": {"keys": [hash_key(WEB_KEY)], "tpm": 1000}}
    client = keyed_app(store).test_client()
    body = b'{"model": "m", "messages": [], "n": 128, "max_tokens": ' + b"9" * 4299 + b"}"
    response = client.post(
        "/v1/chat/completions", data=body, content_type="application/json", headers=bearer(WEB_KEY)
    )
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "tokens_exceeded"


def test_a_request_holds_its_slot_until_its_response_is_closed_but_the_last_slot(client):
    # Unbuffered test responses stay open (as a slow stream would) until closed.
    first = client.get("/test", headers=bearer(BATCH_KEY))
    assert client.application.runtime.limiter.in_flight("batch") == 1
    # batch's max_concurrent is 2: a whole answer holding its last slot is settled before it is
    # sent, so its next request, to whichever process, is admitted while this one is still read.
    second = client.get("/test", headers=bearer(BATCH_KEY))
    assert client.application.runtime.limiter.in_flight("batch") == 1
    assert client.get("/test", headers=bearer(BATCH_KEY), buffered=True).status_code == 200
    second.close()
    assert client.application.runtime.limiter.in_flight("batch") == 1  # freed once, not again
    first.close()
    assert client.application.runtime.limiter.in_flight("batch") == 0


def test_a_failing_request_frees_its_slot():
    client = keyed_app({"web": {"keys": [hash_key(WEB_KEY)], "max_concurrent": 1}}).test_client()
    for _ in range(3):
        assert client.get("/test/exception", headers=bearer(WEB_KEY), buffered=True).status_code == 500


def test_without_a_store_the_proxy_runs_open_and_says_so_once(caplog):
    caplog.set_level(logging.WARNING)
    client = make_app().test_client()
    assert client.get("/test").status_code == 200
    assert client.get("/test", headers=bearer(WRONG_KEY)).status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.name == "service.governance.auth"]
    assert len(warnings) == 1
    assert "OPEN" in warnings[0] and "AIPROXY_CLIENT_KEYS" in warnings[0]


@pytest.mark.parametrize("environment_type", ["test", "production"])
def test_test_and_production_refuse_to_start_without_a_store(environment_type):
    with pytest.raises(KeyStoreError) as error:
        make_app(ENVIRONMENT_TYPE=environment_type)
    assert str(error.value) == (
        f"no client key store: ENVIRONMENT_TYPE={environment_type} requires client authentication; "
        "set AIPROXY_CLIENT_KEYS (README: Client keys)"
    )


def test_development_runs_open_without_a_store():
    assert make_app(ENVIRONMENT_TYPE="development").test_client().get("/test").status_code == 200


def test_production_with_a_store_requires_keys():
    client = keyed_app(ENVIRONMENT_TYPE="production").test_client()
    assert client.get("/test").status_code == 401
    assert client.get("/test", headers=bearer(WEB_KEY)).status_code == 200


def test_an_invalid_store_stops_start_up_naming_the_problem_not_the_content():
    with pytest.raises(KeyStoreError) as error:
        make_app(AIPROXY_CLIENT_KEYS=json.dumps({"web": {"keys": [WEB_KEY]}}))
    assert str(error.value).startswith(
        "the client key store in AIPROXY_CLIENT_KEYS is not valid: client 'web': keys[0] is not a sha256"
    )
    assert WEB_KEY not in str(error.value)
    with pytest.raises(KeyStoreError, match="not valid JSON"):
        make_app(AIPROXY_CLIENT_KEYS='{"web": ')


def test_an_empty_store_refuses_every_key():
    client = keyed_app({}).test_client()
    assert client.get("/test", headers=bearer(WEB_KEY)).status_code == 401
    assert client.get("/").status_code == 200


def test_an_empty_store_starts_production_locked():
    # The CDK stack creates client_api_keys as `{}`: the first deploy must come up (health check
    # green) while refusing every client until an administrator adds keys.
    app = keyed_app({}, ENVIRONMENT_TYPE="production", ENVIRONMENT="aiproxy.example.org")
    client = app.test_client()
    assert client.get("/").status_code == 200
    for route in ("/test", "/v1/models"):
        response = client.get(route, headers=bearer(WEB_KEY))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

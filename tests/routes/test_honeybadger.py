"""Honeybadger reports, read from a local catcher that the real honeybadger client sends to."""

import pytest

from testbed.honeybadger import HoneybadgerCatcher
from tests.support.app import make_app

HB_KEY = "hbp_test_reporting_key_123"
PROVIDER_KEY = "sk-provider-secret-value-0001"
CLIENT_KEY = "aip_client_secret_value_0002"


@pytest.fixture
def catcher():
    with HoneybadgerCatcher() as catcher:
        yield catcher


def reporting_app(catcher, **extra):
    return make_app(
        HONEYBADGER_API_KEY=HB_KEY,
        HONEYBADGER_ENDPOINT=catcher.url,
        HONEYBADGER_FORCE_SYNC="1",
        OPENAI_API_KEY=PROVIDER_KEY,
        **extra,
    )


def test_unhandled_exception_is_reported_once_with_route_and_request_id(catcher):
    client = reporting_app(catcher).test_client()
    response = client.get(
        "/test/exception?api-key=sk-query-secret-0003&note=kept",
        headers={"Authorization": f"Bearer {CLIENT_KEY}", "X-Request-Id": "req-hb-1"},
    )
    assert response.status_code == 500
    [notice] = catcher.wait_for(1)
    assert catcher.api_keys == [HB_KEY]
    assert notice["error"]["class"] == "DiagnosticException"
    assert "raised on purpose" in notice["error"]["message"]
    request = notice["request"]
    assert request["context"]["request_id"] == "req-hb-1"
    assert request["context"]["route"] == "/test/exception"
    assert request["action"] == "status.test_exception"
    # The client reads Authorization out of its request data; whatever is left must be filtered.
    assert request["cgi_data"].get("Authorization", "[FILTERED]") == "[FILTERED]"
    assert request["params"]["api-key"] == "[FILTERED]"
    assert request["params"]["note"] == ["kept"]
    raw = catcher.raw()
    for secret in (CLIENT_KEY, "sk-query-secret-0003", PROVIDER_KEY):
        assert secret not in raw


@pytest.mark.parametrize(("route", "level"), [("/test/error", "ERROR"), ("/test/critical", "CRITICAL")])
def test_error_and_critical_log_lines_are_reported(catcher, route, level):
    client = reporting_app(catcher).test_client()
    assert client.get(route, headers={"X-Request-Id": "req-log"}).status_code == 200
    [notice] = catcher.wait_for(1)
    assert notice["error"]["class"] == f"{level} log"
    assert "logged on purpose" in notice["error"]["message"]
    assert notice["request"]["context"]["request_id"] == "req-log"


def test_a_logged_exception_is_reported_once_however_often_it_is_logged(catcher):
    import logging

    app = reporting_app(catcher)

    @app.get("/log-twice")
    def log_twice():
        try:
            raise ValueError("logged twice")
        except ValueError:
            logging.getLogger("x").exception("first")
            logging.getLogger("y").exception("second")
        raise RuntimeError("then unhandled")

    assert app.test_client().get("/log-twice").status_code == 500
    notices = catcher.wait_for(2)
    assert sorted(n["error"]["class"] for n in notices) == ["RuntimeError", "ValueError"]


def test_secret_values_are_blanked_even_in_messages(catcher):
    import logging

    app = reporting_app(catcher)

    @app.get("/leaky")
    def leaky():
        logging.getLogger("careless").error("upstream refused key %s", PROVIDER_KEY)
        return {}

    app.test_client().get("/leaky")
    [notice] = catcher.wait_for(1)
    assert PROVIDER_KEY not in catcher.raw()
    assert "[FILTERED]" in notice["error"]["message"]


def test_warnings_are_not_reported(catcher):
    import logging
    import time

    app = reporting_app(catcher)

    @app.get("/warn")
    def warn():
        logging.getLogger("w").warning("only a warning")
        return {}

    app.test_client().get("/warn")
    time.sleep(0.2)
    assert catcher.notices == []


def test_without_a_key_nothing_is_sent(catcher):
    import time

    client = make_app(HONEYBADGER_ENDPOINT=catcher.url, HONEYBADGER_FORCE_SYNC="1").test_client()
    for route in ("/test/exception", "/test/error", "/test/critical"):
        client.get(route)
    time.sleep(0.3)
    assert catcher.notices == []


def test_a_key_set_or_rotated_in_secrets_manager_takes_effect_without_a_restart(catcher, aws):
    from service.config.secrets import SecretStore, secret_id
    from tests.support.clock import Clock

    env_type, env = "development", "aiproxy-dev-x.example.org"
    name = secret_id(env_type, env, "honeybadger_api_key")
    aws.create_secret(Name=name)  # created empty, as the CDK stack does
    clock = Clock()
    secrets = SecretStore({}, env_type, env, ttl=300, clock=clock)
    app = make_app(
        secrets=secrets,
        ENVIRONMENT_TYPE=env_type,
        ENVIRONMENT=env,
        HONEYBADGER_ENDPOINT=catcher.url,
        HONEYBADGER_FORCE_SYNC="1",
    )
    client = app.test_client()
    client.get("/test/error")
    assert catcher.notices == []  # no key yet: nothing is sent

    aws.put_secret_value(SecretId=name, SecretString="hbp_first_key_0001")
    clock.now += 301
    client.get("/test/error")
    catcher.wait_for(1)
    aws.put_secret_value(SecretId=name, SecretString="hbp_rotated_key_0002")
    clock.now += 301
    client.get("/test/critical")
    catcher.wait_for(2)
    assert catcher.api_keys == ["hbp_first_key_0001", "hbp_rotated_key_0002"]

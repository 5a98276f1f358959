import logging

import pytest

from service.config.secrets import (
    CLIENT_API_KEYS,
    HONEYBADGER_API_KEY,
    OPENAI_API_KEY,
    SECRET_NAMES,
    SecretStore,
    env_variable,
    secret_id,
)
from tests.support.clock import Clock
from tests.support.waiting import wait_until

ENV_TYPE, ENV = "production", "aiproxy.example.org"


def store(source=None, clock=None, **kwargs) -> SecretStore:
    return SecretStore(source or {}, ENV_TYPE, ENV, ttl=300, clock=clock or Clock(), **kwargs)


def test_id_follows_the_naming_convention():
    assert secret_id(ENV_TYPE, ENV, OPENAI_API_KEY) == "production/aiproxy.example.org/openai_api_key"
    assert SECRET_NAMES == (
        "honeybadger_api_key",
        "openai_api_key",
        "client_api_keys",
        "redis_auth",
        "safety_policies",
        "end_user_hash_key",
        "answer_signing_key",
    )
    assert env_variable(OPENAI_API_KEY) == "OPENAI_API_KEY"
    assert env_variable(HONEYBADGER_API_KEY) == "HONEYBADGER_API_KEY"
    assert env_variable(CLIENT_API_KEYS) == "AIPROXY_CLIENT_KEYS"


def test_reads_the_secret_under_its_deployment_prefix(aws):
    aws.create_secret(Name="production/aiproxy.example.org/openai_api_key", SecretString="sk-from-aws")
    aws.create_secret(Name="test/aiproxy.example.org/openai_api_key", SecretString="sk-other-environment")
    assert store().get(OPENAI_API_KEY) == "sk-from-aws"


def test_environment_override_wins(aws):
    aws.create_secret(Name=secret_id(ENV_TYPE, ENV, OPENAI_API_KEY), SecretString="sk-from-aws")
    assert store({"OPENAI_API_KEY": "sk-from-env"}).get(OPENAI_API_KEY) == "sk-from-env"


def test_locally_without_a_deployment_aws_is_never_called():
    def no_client():
        raise AssertionError("Secrets Manager must not be called outside a deployment")

    local = SecretStore({}, None, None, client_factory=no_client)
    assert local.get(OPENAI_API_KEY) is None
    assert SecretStore({"OPENAI_API_KEY": "sk-local"}, None, None, client_factory=no_client).get(
        OPENAI_API_KEY
    ) == ("sk-local")


def test_cached_then_rotation_is_picked_up_after_the_ttl(aws):
    name = secret_id(ENV_TYPE, ENV, OPENAI_API_KEY)
    aws.create_secret(Name=name, SecretString="sk-old")
    clock = Clock()
    secrets = store(clock=clock)
    assert secrets.get(OPENAI_API_KEY) == "sk-old"
    aws.put_secret_value(SecretId=name, SecretString="sk-new")
    clock.now += 299
    assert secrets.get(OPENAI_API_KEY) == "sk-old"  # still cached
    clock.now += 2
    assert secrets.get(OPENAI_API_KEY) == "sk-new"  # no restart needed


def test_missing_secret_gives_none_and_one_warning(aws, caplog):
    secrets = store()
    with caplog.at_level(logging.WARNING, logger="service.config.secrets"):
        assert secrets.get(OPENAI_API_KEY) is None
        secrets._clock.now += 1000
        assert secrets.get(OPENAI_API_KEY) is None  # still missing: no second warning
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "production/aiproxy.example.org/openai_api_key is missing or empty" in warnings[0].getMessage()


@pytest.mark.parametrize("value", [None, "  \n"])
def test_secret_without_a_value_counts_as_missing(aws, caplog, value):
    # The CDK stack creates the secrets with no value; an administrator sets it later.
    extra = {} if value is None else {"SecretString": value}
    aws.create_secret(Name=secret_id(ENV_TYPE, ENV, HONEYBADGER_API_KEY), **extra)
    with caplog.at_level(logging.WARNING, logger="service.config.secrets"):
        assert store().get(HONEYBADGER_API_KEY) is None
    assert len(caplog.records) == 1
    assert "is missing or empty" in caplog.text


def test_aws_error_keeps_running_with_one_warning(caplog):
    class FailingClient:
        calls = 0

        def get_secret_value(self, SecretId):
            FailingClient.calls += 1
            raise ConnectionError("could not reach secretsmanager")

    clock = Clock()
    secrets = store(clock=clock, client_factory=FailingClient)
    with caplog.at_level(logging.WARNING, logger="service.config.secrets"):
        assert secrets.get(OPENAI_API_KEY) is None
        clock.now += 301
        assert secrets.get(OPENAI_API_KEY) is None
    assert FailingClient.calls == 2  # retried after the TTL, not on every request
    assert len(caplog.records) == 1
    assert "Could not read secret production/aiproxy.example.org/openai_api_key" in caplog.text


def test_aws_error_after_a_good_read_keeps_the_last_value(aws, monkeypatch):
    aws.create_secret(Name=secret_id(ENV_TYPE, ENV, OPENAI_API_KEY), SecretString="sk-good")
    clock = Clock()
    secrets = store(clock=clock)
    assert secrets.get(OPENAI_API_KEY) == "sk-good"

    def broken(**kwargs):
        raise ConnectionError("network down")

    monkeypatch.setattr(secrets._client, "get_secret_value", broken)
    clock.now += 301
    assert secrets.get(OPENAI_API_KEY) == "sk-good"


def test_no_region_configured_is_an_aws_error_not_a_crash(monkeypatch, caplog):
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with caplog.at_level(logging.WARNING, logger="service.config.secrets"):
        assert SecretStore({}, ENV_TYPE, ENV).get(OPENAI_API_KEY) is None
    assert "Could not read secret" in caplog.text


def test_known_values_lists_what_is_held(aws):
    aws.create_secret(Name=secret_id(ENV_TYPE, ENV, OPENAI_API_KEY), SecretString="sk-held")
    secrets = store({"HONEYBADGER_API_KEY": "hb-env"})
    secrets.get(OPENAI_API_KEY)
    assert sorted(secrets.known_values()) == ["hb-env", "sk-held"]


def test_a_slow_refresh_does_not_hold_up_other_requests():
    import threading

    class SlowClient:
        def __init__(self) -> None:
            self.release = threading.Event()
            self.calls = 0

        def get_secret_value(self, SecretId):
            self.calls += 1
            if self.calls > 1:  # the refresh hangs until the test lets it go
                self.release.wait(10)
            return {"SecretString": f"sk-value-{self.calls}"}

    client = SlowClient()
    clock = Clock()
    secrets = store(clock=clock, client_factory=lambda: client)
    assert secrets.get(OPENAI_API_KEY) == "sk-value-1"
    clock.now += 301
    refresher = threading.Thread(target=secrets.get, args=(OPENAI_API_KEY,))
    refresher.start()
    wait_until(lambda: client.calls == 2, timeout=10)
    # While the refresh waits on AWS, other callers get the cached value at once.
    assert secrets.get(OPENAI_API_KEY) == "sk-value-1"
    client.release.set()
    refresher.join(10)
    assert secrets.get(OPENAI_API_KEY) == "sk-value-2"
    assert client.calls == 2


def test_reads_the_region_from_aws_region_alone(aws, monkeypatch):
    # AWS_REGION is what the README says to set (and what Bedrock reads); boto3's own chain
    # looks only at AWS_DEFAULT_REGION, so a store given AWS_REGION alone must still work.
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    aws.create_secret(Name=secret_id(ENV_TYPE, ENV, OPENAI_API_KEY), SecretString="sk-from-aws")
    assert store({"AWS_REGION": "us-east-1"}).get(OPENAI_API_KEY) == "sk-from-aws"

"""The key store as a Secrets Manager secret (moto): rotation, revocation and bad values at runtime."""

import io
import json

import boto3
import pytest

from service.config.secrets import CLIENT_API_KEYS, SecretStore, secret_id
from service.governance.key_store import KeyStoreError, hash_key
from service.ops.observability import configure_logging
from tests.support.app import make_app
from tests.support.clock import Clock

ENV_TYPE, ENV = "test", "aiproxy-test.example.org"
SECRET = secret_id(ENV_TYPE, ENV, CLIENT_API_KEYS)
TTL = 300
OLD_KEY = "aip_rotation-old-key-00000000000000000000001"
NEW_KEY = "aip_rotation-new-key-00000000000000000000002"
OTHER_KEY = "aip_rotation-other-key-000000000000000000003"


def store_json(**clients: list[str]) -> str:
    return json.dumps({name: {"keys": [hash_key(key) for key in keys]} for name, keys in clients.items()})


def deployed_app(clock: Clock):
    secrets = SecretStore(
        {},
        ENV_TYPE,
        ENV,
        ttl=TTL,
        client_factory=lambda: boto3.client("secretsmanager", region_name="us-east-1"),
        clock=clock,
    )
    return make_app(secrets=secrets, ENVIRONMENT_TYPE=ENV_TYPE, ENVIRONMENT=ENV)


def status(client, key: str) -> int:
    return client.get("/test", headers={"Authorization": f"Bearer {key}"}, buffered=True).status_code


def test_adding_then_revoking_a_key_takes_effect_after_the_cache_without_a_restart(aws):
    aws.create_secret(Name=SECRET, SecretString=store_json(web=[OLD_KEY]))
    clock = Clock()
    client = deployed_app(clock).test_client()
    assert status(client, OLD_KEY) == 200
    assert status(client, NEW_KEY) == 401

    # Rotation, step 1: the new key is added next to the old one.
    aws.put_secret_value(SecretId=SECRET, SecretString=store_json(web=[OLD_KEY, NEW_KEY]))
    clock.now += TTL - 1
    assert status(client, NEW_KEY) == 401  # the cached store is still in force
    clock.now += 1
    assert status(client, NEW_KEY) == 200
    assert status(client, OLD_KEY) == 200

    # Step 2, once the client uses the new key: the old one is revoked.
    aws.put_secret_value(SecretId=SECRET, SecretString=store_json(web=[NEW_KEY], batch=[OTHER_KEY]))
    clock.now += TTL
    assert status(client, OLD_KEY) == 401
    assert status(client, NEW_KEY) == 200
    assert status(client, OTHER_KEY) == 200


def test_a_store_broken_by_a_rotation_keeps_the_last_valid_one_and_logs_one_error(aws):
    aws.create_secret(Name=SECRET, SecretString=store_json(web=[OLD_KEY]))
    clock = Clock()
    app = deployed_app(clock)
    logs = io.StringIO()
    configure_logging("INFO", "json", stream=logs)
    client = app.test_client()
    broken = '{"web": {"keys": ["' + NEW_KEY + '"]}'  # a raw key, and a missing brace
    aws.put_secret_value(SecretId=SECRET, SecretString=broken)
    for _ in range(3):
        clock.now += TTL
        assert status(client, OLD_KEY) == 200
        assert status(client, NEW_KEY) == 401
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["message"].startswith(f"The client key store in {SECRET} is not valid (not valid JSON")
    assert "keeping the last valid one" in errors[0]["message"]
    assert NEW_KEY not in logs.getvalue() and hash_key(OLD_KEY) not in logs.getvalue()

    # Fixed: the new store is used from the next read on.
    aws.put_secret_value(SecretId=SECRET, SecretString=store_json(web=[NEW_KEY]))
    clock.now += TTL
    assert status(client, NEW_KEY) == 200
    assert status(client, OLD_KEY) == 401


def test_a_store_that_disappears_refuses_every_request_instead_of_running_open(aws):
    aws.create_secret(Name=SECRET, SecretString=store_json(web=[OLD_KEY]))
    clock = Clock()
    client = deployed_app(clock).test_client()
    assert status(client, OLD_KEY) == 200
    aws.delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)
    clock.now += TTL
    for key in (OLD_KEY, "", NEW_KEY):
        assert status(client, key) == 503
    assert client.get("/").status_code == 200
    aws.create_secret(Name=SECRET, SecretString=store_json(web=[OLD_KEY]))
    clock.now += TTL
    assert status(client, OLD_KEY) == 200


def test_a_deployment_without_the_secret_refuses_to_start_naming_it(aws):
    with pytest.raises(KeyStoreError) as error:
        deployed_app(Clock())
    assert str(error.value) == (
        "no client key store: ENVIRONMENT_TYPE=test requires client authentication; "
        f"set AIPROXY_CLIENT_KEYS or the secret {SECRET} (README: Client keys)"
    )


def test_an_empty_secret_is_no_store(aws):
    aws.create_secret(Name=SECRET, SecretString=" ")
    with pytest.raises(KeyStoreError, match="no client key store"):
        deployed_app(Clock())

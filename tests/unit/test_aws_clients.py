"""AWS clients (service.config.aws): one boto3 session per region and credentials in a process."""

from __future__ import annotations

import pytest

from service.config import aws as aws_clients
from service.config.secrets import OPENAI_API_KEY, SecretStore, secrets_manager_client
from service.gateway.providers.bedrock.client import boto_client

SOURCE = {"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def sessions_made(monkeypatch) -> list[dict]:
    """The sources a new session was made for, from now on (the cache starts empty)."""
    made: list[dict] = []
    make = aws_clients.session

    def counting(source):
        made.append(dict(source))
        return make(source)

    monkeypatch.setattr(aws_clients, "_sessions", {})
    monkeypatch.setattr(aws_clients, "session", counting)
    return made


def bedrock(source):
    return boto_client(source, connect_timeout=1, read_timeout=1, retries=0)


def test_secrets_manager_and_bedrock_share_one_session(aws, sessions_made):  # aws: moto's
    # A session loads botocore's data files (several MiB): a deployment's worker, which reads its
    # secrets and calls Bedrock, holds them once.
    aws.create_secret(Name="production/aiproxy.example.org/openai_api_key", SecretString="sk-from-aws")
    store = SecretStore({"AWS_REGION": "us-east-1"}, "production", "aiproxy.example.org")
    assert store.get(OPENAI_API_KEY) == "sk-from-aws"
    runtime = bedrock({"AWS_REGION": "us-east-1"})
    assert runtime.meta.region_name == "us-east-1"
    assert len(sessions_made) == 1


def test_another_region_or_other_credentials_get_a_session_of_their_own(sessions_made):
    first = secrets_manager_client(SOURCE)
    assert bedrock(SOURCE).meta.region_name == first.meta.region_name == "eu-west-1"
    assert len(sessions_made) == 1
    assert bedrock({**SOURCE, "AWS_REGION": "us-west-2"}).meta.region_name == "us-west-2"
    bedrock({**SOURCE, "AWS_ACCESS_KEY_ID": "other"})
    assert [source.get("AWS_REGION") for source in sessions_made] == ["eu-west-1", "us-west-2", "eu-west-1"]
    assert sessions_made[2]["AWS_ACCESS_KEY_ID"] == "other"

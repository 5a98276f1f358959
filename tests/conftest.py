"""Fixtures shared by every test."""

from __future__ import annotations

import pytest

from service.config import aws as service_aws
from tests.support.app import make_app


@pytest.fixture
def app():
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def fake_openai():
    """A fake OpenAI-compatible upstream on 127.0.0.1 (testbed/openai_upstream.py)."""
    from testbed.openai_upstream import FakeOpenAI

    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def aws(monkeypatch):
    """Every AWS call goes to moto (test credentials, us-east-1); yields a Secrets Manager client."""
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # The service keeps one boto3 session per process (service.config.aws): one an earlier test made,
    # perhaps before moto was imported, would not go to moto. This test starts with none.
    monkeypatch.setattr(service_aws, "_sessions", {})
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")

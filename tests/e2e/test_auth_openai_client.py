"""The official `openai` client, given a proxy client key as its api_key, against the real server."""

import json

import openai
import pytest

from service.governance.key_store import hash_key

PROVIDER_KEY = "sk-provider-openai-client-test"
CLIENT_KEY = "aip_openai-client-key-0000000000000000000000001"
WRONG_KEY = "aip_openai-client-wrong-000000000000000000000002"


@pytest.fixture(scope="module")
def server_settings():
    return {
        "OPENAI_API_KEY": PROVIDER_KEY,
        "AIPROXY_CLIENT_KEYS": json.dumps({"web": {"keys": [hash_key(CLIENT_KEY)]}}),
        "ENVIRONMENT_TYPE": "production",
    }


@pytest.fixture
def proxy_client(server):
    """An openai client for the proxy with a given key; closed after the test (no idle connection
    left to hold up the server's graceful stop)."""
    clients = []

    def make(key: str) -> openai.OpenAI:
        clients.append(openai.OpenAI(api_key=key, base_url=server.url + "/v1", max_retries=0, timeout=30))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def test_the_proxy_key_works_as_the_clients_api_key(proxy_client, fake):
    answer = proxy_client(CLIENT_KEY).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
    )
    assert answer.choices[0].message.content == "Hello from the fake upstream."
    # The upstream got the provider key, never the client's.
    upstream = fake.requests_to("/chat/completions")[-1]
    assert upstream.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert CLIENT_KEY not in json.dumps(upstream.headers)


def test_streaming_works_with_the_proxy_key(proxy_client):
    stream = proxy_client(CLIENT_KEY).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Hello from the fake upstream."


def test_a_wrong_key_raises_authentication_error_and_never_reaches_the_upstream(proxy_client, fake):
    before = len(fake.requests)
    client = proxy_client(WRONG_KEY)
    with pytest.raises(openai.AuthenticationError) as error:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert error.value.status_code == 401
    assert error.value.code == "invalid_api_key"
    assert WRONG_KEY not in str(error.value)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert len(fake.requests) == before

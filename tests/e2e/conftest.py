"""The real server in front of a fake OpenAI upstream, shared by the tests of one module.

A module sets the server's settings by overriding `server_settings`; its tests then ask for
`server` (the running proxy) and `fake` (the upstream it sends to).
"""

from __future__ import annotations

import pytest

from testbed.proxy import proxy_with_fake_openai


@pytest.fixture(scope="module")
def server_settings() -> dict[str, str]:
    """The server's settings (OPENAI_BASE_URL is added); the fake demands their OPENAI_API_KEY."""
    return {"OPENAI_API_KEY": "sk-provider-key-0123456789"}


@pytest.fixture(scope="module")
def proxy_and_fake(server_settings):
    with proxy_with_fake_openai(server_settings) as both:
        yield both


@pytest.fixture(scope="module")
def fake(proxy_and_fake):
    return proxy_and_fake[0]


@pytest.fixture(scope="module")
def server(proxy_and_fake):
    return proxy_and_fake[1]

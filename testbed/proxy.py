"""The real server process in front of a fake OpenAI upstream, the way most end-to-end tests run it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from testbed.openai_upstream import FakeOpenAI
from testbed.server import RunningServer, running_server


@contextmanager
def proxy_with_fake_openai(
    settings: Mapping[str, str], **fake_options: Any
) -> Iterator[tuple[FakeOpenAI, RunningServer]]:
    """Start a `FakeOpenAI(**fake_options)`, then the server with `settings` and OPENAI_BASE_URL
    pointing at the fake; yield both.

    The fake demands the settings' OPENAI_API_KEY (when there is one), so the proxy sending any
    other key fails the test.
    """
    with (
        FakeOpenAI(api_key=settings.get("OPENAI_API_KEY"), **fake_options) as fake,
        running_server({"OPENAI_BASE_URL": fake.url, **settings}) as server,
    ):
        yield fake, server

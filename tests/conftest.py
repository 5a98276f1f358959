"""Fixtures shared by every test."""

from __future__ import annotations

import pytest

from tests.support.app import make_app


@pytest.fixture
def app():
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def fake_openai():
    """A fake OpenAI-compatible upstream on 127.0.0.1 (tests/fakes/openai_upstream.py)."""
    from tests.fakes.openai_upstream import FakeOpenAI

    with FakeOpenAI() as fake:
        yield fake

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

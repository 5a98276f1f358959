"""Fixtures shared by every test, and the groups (pytest markers) a test belongs to by where it lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import aws as service_aws
from tests.support.app import make_app

TESTS = Path(__file__).resolve().parent

# The slow groups, by folder or file under tests/ (markers registered in pyproject.toml). `make check`
# leaves out every test in one of them; `make test` runs them all. Each folder of tests is either
# here or in FAST_FOLDERS (tests/unit/test_suite_layout.py checks it).
GROUPS = {
    "e2e": ("e2e",),
    "e2e/test_evaluation_report_browser.py": ("browser",),
    "e2e/test_node_client.py": ("node",),
    "e2e/test_runtime_install.py": ("slow",),  # pip installs the runtime into a new venv
    "infra": ("infra",),
    "deployed": ("deployed",),
}
# What `make check` runs: plain code (with a real Redis where needed), the lab's and the benchmark's
# own code, and the routes through Flask's test client; no gunicorn, browser, Node or CDK.
FAST_FOLDERS = ("unit", "routes", "lab", "bench")


def groups_of(path: Path) -> set[str]:
    """The markers of the test file at `path` (a file under tests/)."""
    path = path.resolve()
    if not path.is_relative_to(TESTS):
        return set()
    parts = path.relative_to(TESTS).parts
    prefixes = {"/".join(parts[:n]) for n in range(1, len(parts) + 1)}
    return {group for prefix, groups in GROUPS.items() if prefix in prefixes for group in groups}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for group in sorted(groups_of(item.path)):
            item.add_marker(group)


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

"""The deployed-environment suite (tests/deployed) passes against a real local server.

The pipeline runs tests/deployed against each environment it deploys; here the same suite runs,
as the pipeline runs it (a separate pytest process given AIPROXY_URL and AIPROXY_TEST_KEY),
against the real server process with a client key store and the fake upstream, so a broken
deployed test shows up in `make test` and not first in the pipeline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.governance.key_store import hash_key
from testbed.openai_upstream import Reply
from testbed.proxy import proxy_with_fake_openai
from tests.support.assessment import tsv_answer

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_KEY = "sk-provider-key-for-the-deployed-suite"
CLIENT_KEY = "aip_deployed-suite-client-key"


def grade_assessments(request):
    """Answer the grader's requests (a system message with the rubric) with valid tables."""
    body = request.body if isinstance(request.body, dict) else {}
    messages = body.get("messages") or []
    if messages and messages[0].get("role") == "system" and "Key Concept" in str(messages[0].get("content")):
        return Reply([tsv_answer(*(["Convincing Evidence"] * 4))] * int(body.get("n") or 1))
    return None


@pytest.fixture(scope="module")
def server():
    settings = {
        "OPENAI_API_KEY": PROVIDER_KEY,
        "AIPROXY_CLIENT_KEYS": json.dumps({"pipeline": {"keys": [hash_key(CLIENT_KEY)]}}),
    }
    with proxy_with_fake_openai(settings) as (fake, server):
        fake.responder = grade_assessments
        yield server


def run_suite(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/deployed",
            "-n",
            "0",
            "-p",
            "no:cacheprovider",
            "-rs",
            *arguments,
        ],
        cwd=ROOT,
        env={**keep, **environment},
        capture_output=True,
        text=True,
        timeout=240,
    )


def outcome(result: subprocess.CompletedProcess) -> dict[str, int]:
    summary = result.stdout.strip().splitlines()[-1]
    return {word: int(count) for count, word in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}


def test_the_whole_suite_passes_with_nothing_skipped(server):
    result = run_suite({"AIPROXY_URL": server.url, "AIPROXY_TEST_KEY": CLIENT_KEY})
    assert result.returncode == 0, result.stdout + result.stderr
    counts = outcome(result)
    assert counts.get("passed", 0) >= 7 and "skipped" not in counts, result.stdout


def test_the_smoke_subset_checks_health_auth_chat_and_assessment(server):
    result = run_suite({"AIPROXY_URL": server.url, "AIPROXY_TEST_KEY": CLIENT_KEY}, "-m", "smoke", "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    passed = set(re.findall(r"::(test_\w+) PASSED", result.stdout))
    assert passed == {
        "test_health",
        "test_requests_without_a_valid_key_are_refused",
        "test_chat_completion",
        "test_assessment_of_the_sample_program",
    }


def test_a_wrong_key_fails_the_suite(server):
    # The suite is not a rubber stamp: with a key the deployment does not know, it fails.
    result = run_suite({"AIPROXY_URL": server.url, "AIPROXY_TEST_KEY": "aip_wrong"}, "-m", "smoke")
    assert result.returncode == 1
    assert outcome(result).get("failed", 0) >= 2


def test_without_a_url_every_test_is_skipped_with_the_reason():
    result = run_suite({})
    assert result.returncode == 0, result.stdout + result.stderr
    counts = outcome(result)
    assert counts.get("skipped", 0) >= 7 and "passed" not in counts
    assert "AIPROXY_URL is not set" in result.stdout

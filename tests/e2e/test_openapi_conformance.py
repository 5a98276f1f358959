"""The OpenAPI document agrees with the real server: schemathesis, driven by `GET /openapi.json`,
sends each operation valid and invalid requests and checks every answer against the document
(status codes, content types, headers, response schemas, no server error, valid data accepted and
invalid data refused, 405 with Allow for methods a path does not take, 401 without the key).

The server runs as `make run` runs it, with a key store and a fake provider that answers every
request (the graded ones with a table naming the rubric's key concepts). The run is bounded: a
fixed number of examples per operation, deterministic generation (the same cases every run), and
a time limit. schemathesis.toml beside this file holds the few settings per operation, and
tests/support/schemathesis_hooks.py what it generates for the document's own string formats.
A failure prints schemathesis's report: each case with a curl command that reproduces it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.assessment.messages import JSON_INSTRUCTION
from service.governance.key_store import hash_key
from testbed.openai_upstream import Fail, FakeOpenAI, Recorded, Reply, Stream
from testbed.server import ROOT, running_server

KEY = "aip_conformance-test-key-000000000000000000000001"
CONFIG = Path(__file__).with_name("schemathesis.toml")
ST = str(Path(sys.executable).with_name("st"))
EXAMPLES_PER_OPERATION = 50
TIME_LIMIT = 120  # seconds; the run takes about 20 s on two busy cores


def key_concepts(system_message: str) -> list[str]:
    """The rubric's key concepts, from the system message the grader sent (service.assessment.messages)."""
    rubric = system_message.partition("\n\nRubric:\n")[2].removesuffix(f"\n\n{JSON_INSTRUCTION}\n")
    rows = [row for row in csv.reader(io.StringIO(rubric, newline="")) if any(cell.strip() for cell in row)]
    header = [" ".join(cell.split()).casefold() for cell in rows[0]]
    column = header.index("key concept")
    return [row[column] for row in rows[1:]]


def graded(system_message: str) -> str:
    """An answer grading every key concept, as a JSON array when the grader asked for JSON."""
    rows = [
        {"Key Concept": concept, "Observations": "seen", "Grade": "Limited Evidence", "Reason": "ok"}
        for concept in key_concepts(system_message)
    ]
    if system_message.endswith(f"\n\n{JSON_INSTRUCTION}\n"):
        return json.dumps(rows)
    return "Key Concept\tObservations\tGrade\tReason\n" + "".join("\t".join(r.values()) + "\n" for r in rows)


def provider(request: Recorded) -> Fail | Reply | Stream:
    """A provider that takes any key and answers what it is sent, or refuses it as vLLM would."""
    body = request.body if isinstance(request.body, dict) else {}
    if request.method == "POST" and not isinstance(body.get("model"), str):
        # As vLLM (FastAPI) refuses a body it cannot validate: a status the proxy relays as it came.
        return Fail(422, "Field required: model", type="BadRequestError")
    if body.get("stream") is True:
        return Stream(["Hello"])
    messages = body.get("messages")
    if request.path.endswith("/chat/completions") and isinstance(messages, list):
        system = messages[0].get("content", "") if messages and isinstance(messages[0], dict) else ""
        if "\n\nRubric:\n" in system:
            return Reply([graded(system)] * body.get("n", 1))
        return Reply(["Hello"])
    if request.path.endswith(("/completions", "/responses")):
        return Reply(["Hello"])
    return Reply(body={"object": "list", "data": []})


@pytest.fixture(scope="module")
def proxy():
    client = {"keys": [hash_key(KEY)], "rpm": 100_000, "max_concurrent": 1000, "safety": "students"}
    store = json.dumps({"conformance": client})
    # A policy of local checks only (no model asked): /v1/safety/check has one to apply, and the
    # relayed routes go through its input check (a word no generated text holds).
    policies = json.dumps({"students": {"input": [{"check": "blocklist", "words": ["zqxforbiddenzqx"]}]}})
    with FakeOpenAI() as fake:
        fake.responder = provider
        settings = {
            "OPENAI_BASE_URL": fake.url,
            "OPENAI_API_KEY": "sk-provider-key-0123456789",
            "AIPROXY_CLIENT_KEYS": store,
            "AIPROXY_SAFETY_POLICIES": policies,
            # /metrics is on, with a key of its own: the client key schemathesis sends is refused.
            "AIPROXY_METRICS_KEY": "metrics-key-0123456789abcdef",
        }
        with running_server(settings) as running:
            yield running


def test_the_server_answers_as_its_openapi_document_says(proxy, tmp_path):
    command = [
        ST,
        "--config-file",
        str(CONFIG),
        "run",
        f"{proxy.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {KEY}",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        # One worker: hypothesis describes its filters with ast.parse, which Python 3.11 can get
        # wrong when two threads parse at once (SystemError: AST constructor recursion depth).
        "--workers",
        "1",
        "--no-color",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # for the hooks module
    run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=TIME_LIMIT)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    print(run.stdout[-1500:])  # the summary, shown with -s
    assert re.search(r"Operations: +(\d+) selected / \1 total", run.stdout), run.stdout[:2000]

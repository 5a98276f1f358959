"""Rubric assessment in the real server process: the samples ship, logs say why answers drop."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from testbed.openai_upstream import Reply
from tests.support.assessment import PROMPT, RUBRIC, tsv_answer
from tests.support.http import fetch

KEY = "sk-provider-key-for-assessment"


@pytest.fixture(scope="module")
def server_settings():
    return {"OPENAI_API_KEY": KEY, "LOG_FORMAT": "json"}


def call(url: str, form: dict | None = None) -> tuple[int, dict]:
    response = fetch(url, urllib.parse.urlencode(form).encode() if form is not None else None, timeout=15)
    return response.status, json.loads(response.body)


def test_graded_over_http_with_an_invalid_answer_dropped_and_logged(server, fake):
    fake.enqueue(
        Reply(
            [
                tsv_answer("Limited Evidence", "No Evidence", "No Evidence", "No Evidence", tag="A"),
                "I'd rather not.",
                tsv_answer("Limited Evidence", "Convincing Evidence", "No Evidence", "No Evidence", tag="C"),
            ]
        )
    )
    form = {
        "code": "var x = 1;",
        "prompt": PROMPT,
        "rubric": RUBRIC,
        "num-responses": "3",
        "student-id": "e2e-7",
    }
    status, body = call(server.url + "/assessment", form)
    assert status == 200
    assert body["data"][0]["Votes"] == ["Limited Evidence", "Limited Evidence"]
    assert body["data"][1]["Grade"] == "No Evidence"  # 1-1 tie: the first grade given
    dropped = [line for line in server.log_records() if line["message"] == "Dropped an invalid model answer"]
    assert [(d["level"], d["student_id"]) for d in dropped] == [("WARNING", "e2e-7")]
    assert dropped[0]["reason"].startswith("answer 2: no table")
    assert not [line for line in server.log_records() if line["level"] in ("ERROR", "CRITICAL")]


def test_sample_routes_work_from_the_installed_package(server, fake):
    before = len(fake.requests)
    status, body = call(server.url + "/test/assessment/blank")
    assert status == 200
    assert body["metadata"]["agent"] == "static"
    assert len(body["data"]) == 4
    assert len(fake.requests) == before  # an empty program never reaches the model

    fake.enqueue(Reply([tsv_answer(*(["Convincing Evidence"] * 4))]))
    status, body = call(server.url + "/test/assessment?remove-comments=1")
    assert status == 200
    assert [row["Grade"] for row in body["data"]] == ["Convincing Evidence"] * 4
    sent = fake.requests[-1].body["messages"][-1]["content"]
    assert '"catch-the-stars://high-score"' in sent and "missed one" not in sent


def test_grading_writes_a_usage_record_with_the_calling_client(server, fake):
    fake.enqueue(
        Reply([tsv_answer(*(["No Evidence"] * 4))], usage={"prompt_tokens": 321, "completion_tokens": 45})
    )
    status, body = call(server.url + "/test/assessment", {"student-id": "usage-1"})
    assert status == 200
    request_id = (
        body
        and [line["request_id"] for line in server.log_records() if line.get("student_id") == "usage-1"][-1]
    )
    [record] = [
        line
        for line in server.log_records()
        if line["logger"] == "service.usage" and line["request_id"] == request_id
    ]
    assert (record["route"], record["status"], record["client"]) == ("/test/assessment", 200, "anonymous")
    assert (record["prompt_tokens"], record["completion_tokens"]) == (321, 45)
    assert record["model"] == "gpt-4o-mini"


def heaviest_request() -> tuple[dict, list[str]]:
    """The most a request may ask of the grader (service.assessment.request's limits): every
    program and example full of comments to remove, the most rubric rows and answers."""
    from service.assessment.fields import MAX_CODE_CHARS, MAX_EXAMPLES, MAX_GRADED_CHARS, MAX_RUBRIC_ROWS

    concepts = [f"Concept {number}" for number in range(MAX_RUBRIC_ROWS)]
    rubric = "Key Concept,Instructions\n" + "".join(f"{c},Look for it\n" for c in concepts)
    line = "var a = 1; // a comment /* and a block */ b = '//not' + `${c}` / 2;\n"
    code = (line * (MAX_CODE_CHARS // len(line)))[:MAX_CODE_CHARS]
    room = MAX_GRADED_CHARS - len(code) - len(rubric) - len(PROMPT)
    example = (line * (room // MAX_EXAMPLES // len(line) + 1))[: room // MAX_EXAMPLES - 10]
    fields = {
        "code": code,
        "prompt": PROMPT,
        "rubric": rubric,
        "examples": [[example, "ok"]] * MAX_EXAMPLES,
        "remove-comments": True,
        "num-responses": 10,
    }
    return fields, concepts


# Asks for `GET /` every 20 ms and prints when each answer took how long: a process of its own, so
# the test's own threads (the fake provider among them) never delay a health check it measures.
PROBE = """
import sys, time, urllib.request
url, until = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < until:
    started = time.monotonic()
    urllib.request.urlopen(url, timeout=5).read()
    print(started, time.monotonic() - started, flush=True)
    time.sleep(0.02)
"""


def health_checks_during_grading(url: str, fields: dict, rows: int, fake) -> list[float]:
    """How long each `GET /` took while the worker graded `fields`, `rows` concepts (seconds)."""
    import subprocess
    import sys
    import time

    concepts = tuple(f"Concept {number}" for number in range(rows))
    fake.enqueue(Reply([tsv_answer(*(["Limited Evidence"] * rows), concepts=concepts)] * 10))
    probe = subprocess.Popen(
        [sys.executable, "-c", PROBE, url + "/", "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.3)  # the probe is running
        started = time.monotonic()
        response = fetch(
            url + "/assessment", json.dumps(fields).encode(), {"Content-Type": "application/json"}, timeout=60
        )
        finished = time.monotonic()
    finally:
        probe.terminate()
        lines = probe.communicate(timeout=10)[0].split()
    assert response.status == 200, response.body[:500]
    assert len(json.loads(response.body)["data"]) == rows
    checks = [(float(at), float(took)) for at, took in zip(lines[::2], lines[1::2], strict=False)]
    during = [took for at, took in checks if started - 0.05 <= at <= finished]
    assert len(during) >= 3, "the grading was too quick to measure anything"
    return during


def test_the_heaviest_request_allowed_leaves_the_worker_answering(fake):
    from testbed.server import running_server

    fields, concepts = heaviest_request()
    # One worker: the health checks share it with the grading. The machine is shared too (other
    # tests, the fake, the probe): a neighbour holding both cores can delay a health check by tens
    # of milliseconds, so the measurement is taken up to three times. A worker that stops
    # answering while it grades fails every time.
    with running_server({"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": KEY, "AIPROXY_WORKERS": "1"}) as solo:
        slowest = []
        for _ in range(3):
            slowest.append(max(health_checks_during_grading(solo.url, fields, len(concepts), fake)))
            if slowest[-1] < 0.1:
                break
    assert slowest[-1] < 0.1, f"health checks waited {[round(took * 1000) for took in slowest]} ms"

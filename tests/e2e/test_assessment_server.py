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

"""`python -m lab.evaluate` on the sample dataset, against the fake upstream.

The fake answers like a model would, per student (it recognises the program in the last user
message): right for most students, wrong on a few key concepts for four of them, with an unusable
answer for hana and an upstream 400 for lea. Every number of the summary is checked against the
values worked out by hand below, and the HTML report must show the same numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lab.dataset import load_dataset
from service.assessment.comments import remove_comments
from service.governance.key_store import hash_key
from testbed.bedrock_runtime import Answer, FakeBedrock
from testbed.openai_upstream import Fail, FakeOpenAI, Recorded, Reply
from testbed.proxy import proxy_with_fake_openai
from tests.support.http import fetch
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "datasets" / "sample"
PROVIDER_KEY = "sk-evaluation-provider-key"
E, C, L, N = "Extensive Evidence", "Convincing Evidence", "Limited Evidence", "No Evidence"

# Where the scripted model disagrees with the human label (student -> key concept -> its grade).
WRONG = {
    "dev": {"Variables": L},  # label No: a wrong grade, still a fail
    "finn": {"Functions": E, "User Input": C},  # labels Convincing, Extensive: both still pass
    "ivo": {"Variables": E, "Conditionals": C},  # Conditionals label Limited: pass/fail flips
    "jun": {"Variables": L, "User Input": N},  # Variables label Convincing: pass/fail flips
}
INVALID = "hana"  # the answer lacks the User Input row: no valid answer, 502
REJECTED = "lea"  # the upstream refuses the request: 400
USAGE = {"prompt_tokens": 300, "completion_tokens": 50, "total_tokens": 350}

# Hand-worked expectations. Grades in GRADES order E, C, L, N; matrix rows are the human label,
# columns the model's grade. 10 students graded (12 minus hana and lea), 10 pairs per concept.
#
# Variables: labels ada E, ben C, cleo L, dev N, emi E, finn C, gus C, ivo C, jun C, kai E;
#   model differs for dev (N->L), ivo (C->E), jun (C->L): exact 7/10; pass/fail only jun flips: 9/10.
#   matrix [[3,0,0,0],[1,3,1,0],[0,0,1,0],[0,0,1,0]]; rows r=[3,5,1,1], columns c=[4,3,3,0].
#   kappa = 1 - sum(d^2 O) / (sum(d^2 r_i c_j) / N), d = i - j (the 1/9 weight factor cancels):
#   observed: (1,0) 1 + (1,2) 1 + (3,2) 1 = 3.
#   expected: r0=3 x (1*3 + 4*3 + 9*0 = 15) = 45; r1=5 x (1*4 + 1*3 + 4*0 = 7) = 35;
#             r2=1 x (4*4 + 1*3 = 19) = 19; r3=1 x (9*4 + 4*3 + 1*3 = 51) = 51; 150 / 10 = 15.
#   kappa = 1 - 3/15 = 0.8.
# Conditionals: ivo L->C only: exact 9/10, pass/fail 9/10.
#   matrix [[3,0,0,0],[0,3,0,0],[0,1,0,0],[0,0,0,3]]; r=[3,3,1,3], c=[3,4,0,3]; observed (2,1) = 1.
#   expected: 3 x (4 + 27) = 93; 3 x (3 + 12) = 45; 1 x (12 + 4 + 3) = 19; 3 x (27 + 16) = 129;
#             286 / 10 = 28.6.  kappa = 1 - 1/28.6 = 0.965035 -> 0.965.
# Functions: finn C->E only: exact 9/10, pass/fail 10/10.
#   matrix [[2,0,0,0],[1,2,0,0],[0,0,2,0],[0,0,0,3]]; r=[2,3,2,3], c=[3,2,2,3]; observed (1,0) = 1.
#   expected: 2 x (2 + 8 + 27) = 74; 3 x (3 + 2 + 12) = 51; 2 x (12 + 2 + 3) = 34;
#             3 x (27 + 8 + 2) = 111; 270 / 10 = 27.  kappa = 1 - 1/27 = 0.962963 -> 0.963.
# User Input: finn E->C, jun L->N: exact 8/10, pass/fail 10/10.
#   matrix [[2,1,0,0],[0,3,0,0],[0,0,0,1],[0,0,0,3]]; r=[3,3,1,3], c=[2,4,0,4]; observed 1 + 1 = 2.
#   expected: 3 x (4 + 36) = 120; 3 x (2 + 16) = 54; 1 x (8 + 4 + 4) = 16; 3 x (18 + 16) = 102;
#             292 / 10 = 29.2.  kappa = 1 - 2/29.2 = 0.931507 -> 0.9315.
# Overall (the four summed): exact 7+9+9+8 = 33/40 = 0.825; pass/fail 9+9+10+10 = 38/40 = 0.95.
#   matrix [[10,1,0,0],[2,11,1,0],[0,1,3,1],[0,0,1,9]]; r=[11,14,5,10], c=[12,13,5,10], N=40.
#   observed: (0,1) 1 + (1,0) 2 + (1,2) 1 + (2,1) 1 + (2,3) 1 + (3,2) 1 = 7.
#   expected: 11 x (13 + 20 + 90) = 1353; 14 x (12 + 5 + 40) = 798; 5 x (48 + 13 + 10) = 355;
#             10 x (108 + 52 + 5) = 1650; 4156 / 40 = 103.9.  kappa = 1 - 7/103.9 = 0.932628 -> 0.9326.
# Tokens: 11 answers reached the client (lea's request was refused), 300 + 50 each.
EXPECTED_PER_CONCEPT = {
    "Variables": {
        "count": 10,
        "exact_matches": 7,
        "accuracy": 0.7,
        "pass_fail_matches": 9,
        "pass_fail_accuracy": 0.9,
        "kappa": 0.8,
        "confusion_matrix": [[3, 0, 0, 0], [1, 3, 1, 0], [0, 0, 1, 0], [0, 0, 1, 0]],
    },
    "Conditionals": {
        "count": 10,
        "exact_matches": 9,
        "accuracy": 0.9,
        "pass_fail_matches": 9,
        "pass_fail_accuracy": 0.9,
        "kappa": 0.965,
        "confusion_matrix": [[3, 0, 0, 0], [0, 3, 0, 0], [0, 1, 0, 0], [0, 0, 0, 3]],
    },
    "Functions": {
        "count": 10,
        "exact_matches": 9,
        "accuracy": 0.9,
        "pass_fail_matches": 10,
        "pass_fail_accuracy": 1.0,
        "kappa": 0.963,
        "confusion_matrix": [[2, 0, 0, 0], [1, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 3]],
    },
    "User Input": {
        "count": 10,
        "exact_matches": 8,
        "accuracy": 0.8,
        "pass_fail_matches": 10,
        "pass_fail_accuracy": 1.0,
        "kappa": 0.9315,
        "confusion_matrix": [[2, 1, 0, 0], [0, 3, 0, 0], [0, 0, 0, 1], [0, 0, 0, 3]],
    },
}
EXPECTED_OVERALL = {
    "count": 40,
    "exact_matches": 33,
    "accuracy": 0.825,
    "pass_fail_matches": 38,
    "pass_fail_accuracy": 0.95,
    "kappa": 0.9326,
    "confusion_matrix": [[10, 1, 0, 0], [2, 11, 1, 0], [0, 1, 3, 1], [0, 0, 1, 9]],
}
TOKENS_OF_11_ANSWERS = {"prompt_tokens": 3300, "completion_tokens": 550, "total_tokens": 3850}
NO_TOKENS = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def model_answer(grades: dict[str, str], student: str) -> str:
    lines = ["Key Concept\tObservations\tGrade\tReason"]
    lines += [
        f"{concept}\tRead {student}'s program.\t{grade}\tAs the rubric says."
        for concept, grade in grades.items()
    ]
    return "\n".join(lines) + "\n"


class ScriptedModel:
    """Answers each request for the student whose (comment-free) program it carries."""

    def __init__(self, dataset_folder: Path) -> None:
        dataset = load_dataset(dataset_folder)
        self.labels = dataset.labels
        self.students_by_code = {remove_comments(code): name for name, code in dataset.programs.items()}

    def student_of(self, request: Recorded) -> str:
        return self.students_by_code[request.body["messages"][-1]["content"]]

    def __call__(self, request: Recorded) -> Reply | Fail | None:
        if not request.path.endswith("/chat/completions"):
            return None  # files and batches: the fake's own answers (a batch's lines come here as chats)
        student = self.student_of(request)
        if student == REJECTED:
            return Fail(
                400, "This model's maximum context length is 128000 tokens.", code="context_length_exceeded"
            )
        grades = {**self.labels[student], **WRONG.get(student, {})}
        if student == INVALID:
            del grades["User Input"]
        return Reply([model_answer(grades, student)], usage=USAGE)


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI(api_key=PROVIDER_KEY) as server:
        server.responder = ScriptedModel(SAMPLE)
        yield server


def evaluate(
    fake: FakeOpenAI, workdir: Path, *args: str, dataset: Path = SAMPLE, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the command as a user would, from `workdir` (no config.txt there), with only these settings."""
    settings = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    settings |= {
        "PYTHONPATH": str(ROOT),
        "OPENAI_BASE_URL": fake.url,
        "OPENAI_API_KEY": PROVIDER_KEY,
        "AIPROXY_UPSTREAM_RETRIES": "0",
    }
    return subprocess.run(
        [sys.executable, "-m", "lab.evaluate", str(dataset), *args],
        cwd=workdir,
        env=settings | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def chat_requests(fake: FakeOpenAI) -> list[Recorded]:
    return fake.requests_to("/chat/completions")


@pytest.fixture(scope="module")
def first_run(fake, tmp_path_factory):
    """One full run on the sample with a fresh cache; several tests read what it produced."""
    workdir = tmp_path_factory.mktemp("evaluation")
    before = len(chat_requests(fake))
    result = evaluate(fake, workdir, "--output", "report", "--workers", "3")
    requests = chat_requests(fake)[before:]
    return result, workdir, requests


def read_summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


def test_every_number_of_the_summary_matches_the_hand_worked_values(first_run):
    result, workdir, _ = first_run
    assert result.returncode == 0, result.stderr
    summary = read_summary(workdir / "report")

    assert summary["students"] == {"evaluated": 12, "graded": 10, "failed": 2}
    assert summary["overall"] == EXPECTED_OVERALL
    assert summary["per_concept"] == EXPECTED_PER_CONCEPT
    assert list(summary["per_concept"]) == ["Variables", "Conditionals", "Functions", "User Input"]
    assert summary["grades"] == [E, C, L, N]
    assert [(f["student"], f["status"]) for f in summary["failed"]] == [(INVALID, 502), (REJECTED, 400)]
    assert "User Input" in summary["failed"][0]["message"]
    assert "maximum context length" in summary["failed"][1]["message"]
    assert summary["usage"] == TOKENS_OF_11_ANSWERS
    assert summary["fresh_usage"] == TOKENS_OF_11_ANSWERS
    assert summary["calls"] == {"upstream": 12, "cached": 0}
    assert summary["parameters"] == {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "num-responses": 1,
        "remove-comments": True,
    }
    assert summary["selection"] == {"students": 12, "sample": None, "seed": None}
    assert summary["examples"] == 1
    assert summary["thresholds"] == {"limits": {}, "checks": [], "passed": True}

    # Per student: the grade the model gave next to the label, in labels.csv order.
    labels = load_dataset(SAMPLE).labels
    assert [r["student"] for r in summary["results"]] == list(labels)
    for row in summary["results"]:
        student = row["student"]
        assert row["failed"] == (student in (INVALID, REJECTED))
        for cell in row["grades"]:
            concept = cell["key_concept"]
            assert cell["label"] == labels[student][concept]
            if row["failed"]:
                assert cell["grade"] is None and cell["exact"] is None
            else:
                assert cell["grade"] == WRONG.get(student, {}).get(concept, cell["label"])
                assert cell["exact"] == (concept not in WRONG.get(student, {}))


def test_students_are_graded_through_the_assessment_code_path(first_run):
    result, _, requests = first_run
    assert result.returncode == 0, result.stderr
    assert len(requests) == 12
    sample = load_dataset(SAMPLE)
    for request in requests:
        assert request.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
        body = request.body
        assert (body["model"], body["temperature"], body["n"]) == ("gpt-4o-mini", 0.2, 1)
        # System prompt + rubric, the example as a user/assistant pair, then the program.
        assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
        assert sample.prompt.strip() in body["messages"][0]["content"]
        assert body["messages"][2]["content"] == sample.examples[0][1]
        assert "//" not in body["messages"][-1]["content"]  # params.json asks for comment removal


def test_the_command_prints_the_measures_and_where_the_report_is(first_run):
    result, _, _ = first_run
    assert "Accuracy: 82.5% exact, 95.0% pass/fail, kappa 0.9326" in result.stdout
    assert "Failed: hana (502)" in result.stdout and "Failed: lea (400)" in result.stdout
    assert "Report: report/report.html" in result.stdout
    assert "Cost: $0.0008 at the listed prices, $0.0008 spent now" in result.stdout  # gpt-4o-mini's
    assert "12/12 students, 2 failed" in result.stderr  # the progress bar
    assert PROVIDER_KEY not in result.stdout + result.stderr


class ReportReader(HTMLParser):
    """Collects the text of every `data-measure` element, the confusion matrices and cell classes."""

    def __init__(self) -> None:
        super().__init__()
        self.measures: dict[str, str] = {}
        self.matrices: dict[str, list[list[int]]] = {}
        self.cell_classes: list[str] = []
        self._open: list[tuple[str, str | None]] = []  # (tag, measure) of open elements
        self._matrix: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("data-matrix"):
            self._matrix = attributes["data-matrix"]
            self.matrices[self._matrix] = []
        if self._matrix and tag == "tr":
            self.matrices[self._matrix].append([])
        if tag == "td" and "class" in attributes:
            self.cell_classes.append(attributes["class"] or "")
        self._open.append((tag, attributes.get("data-measure")))
        if attributes.get("data-measure"):
            self.measures[attributes["data-measure"]] = ""

    def handle_endtag(self, tag):
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break
        if tag == "table":
            if self._matrix:
                self.matrices[self._matrix] = [row for row in self.matrices[self._matrix] if row]
            self._matrix = None

    def handle_data(self, data):
        for _, measure in self._open:
            if measure:
                self.measures[measure] += data
        if self._matrix and self._open and self._open[-1][0] == "td":
            self.matrices[self._matrix][-1].append(int(data))


def read_report(folder: Path) -> ReportReader:
    reader = ReportReader()
    reader.feed((folder / "report.html").read_text(encoding="utf-8"))
    return reader


def test_the_html_report_shows_the_same_numbers(first_run):
    _, workdir, _ = first_run
    report = read_report(workdir / "report")
    text = {name: " ".join(value.split()) for name, value in report.measures.items()}

    assert text["overall.accuracy"] == "82.5%"
    assert text["overall.exact_matches"] == "33/40 grades"
    assert text["overall.pass_fail_accuracy"] == "95.0%"
    assert text["overall.pass_fail_matches"] == "38/40 grades"
    assert text["overall.kappa"] == "0.9326"
    assert (text["students.graded"], text["students.evaluated"], text["students.failed"]) == ("10", "12", "2")
    assert text["failed.count"] == "2"
    # Token counts with thousands separators, as a teacher reads numbers.
    assert (text["usage.total_tokens"], text["usage.prompt_tokens"], text["usage.completion_tokens"]) == (
        "3,850",
        "3,300",
        "550",
    )
    assert (text["calls.upstream"], text["calls.cached"]) == ("12", "0")
    assert text["per_concept.Variables.accuracy"] == "70.0% (7/10)"
    assert text["per_concept.Variables.pass_fail_accuracy"] == "90.0% (9/10)"
    assert text["per_concept.Conditionals.kappa"] == "0.965"
    assert text["per_concept.Functions.kappa"] == "0.963"
    assert text["per_concept.User Input.accuracy"] == "80.0% (8/10)"
    assert text["per_concept.User Input.kappa"] == "0.9315"
    assert [text[f"confidence.{concept}"] for concept in EXPECTED_PER_CONCEPT] == ["HIGH"] * 4

    # The heat maps hold the confusion matrices.
    assert report.matrices["overall"] == EXPECTED_OVERALL["confusion_matrix"]
    for concept, measures in EXPECTED_PER_CONCEPT.items():
        assert report.matrices[concept] == measures["confusion_matrix"]

    # Disagreements are highlighted: 5 grades differ on the same side of the pass line, 2 flip
    # pass/fail; the two failed students' 8 cells are greyed out.
    assert report.cell_classes.count("disagree") == 5
    assert report.cell_classes.count("flip") == 2
    assert report.cell_classes.count("failed") == 8

    html = (workdir / "report" / "report.html").read_text(encoding="utf-8")
    assert "Answer with a tab-separated table" in html  # the prompt
    assert "<th>Key Concept</th>" in html and "<td>User Input</td>" in html  # the rubric
    assert "<script" not in html and 'href="http' not in html  # self-contained


def expected_confidence(summary: dict) -> dict[str, str]:
    """The original service's rule, applied to the per-concept pass/fail accuracy of the summary."""
    levels = {}
    for concept, measures in summary["per_concept"].items():
        accuracy = measures["pass_fail_accuracy"]
        if accuracy is None or accuracy < 0.8:
            levels[concept] = "LOW"
        elif accuracy < 0.85:
            levels[concept] = "MEDIUM"
        else:
            levels[concept] = "HIGH"
    return levels


def read_confidence(folder: Path) -> dict[str, str]:
    return json.loads((folder / "confidence.json").read_text(encoding="utf-8"))


def test_confidence_json_rates_each_key_concept_from_its_pass_fail_accuracy(fake, first_run, tmp_path):
    result, workdir, _ = first_run
    assert "Confidence: report/confidence.json" in result.stdout
    summary = read_summary(workdir / "report")
    confidence = read_confidence(workdir / "report")
    # Pass/fail accuracies 0.9, 0.9, 1.0, 1.0: all HIGH; the keys in rubric order and spelling.
    assert list(confidence.items()) == [
        (c, "HIGH") for c in ("Variables", "Conditionals", "Functions", "User Input")
    ]
    assert confidence == expected_confidence(summary)

    # Fewer students from the first run's cache, so that a flip weighs more. ada, ben, cleo, dev,
    # ivo: ivo's Conditionals flips, 4/5 = 0.8 exactly: MEDIUM. ada, ben, ivo, jun: ivo's
    # Conditionals and jun's Variables flip, 3/4 = 0.75: LOW.
    cache = ["--cache-dir", str(workdir / ".assessment-cache")]
    expected = {
        "ada,ben,cleo,dev,ivo": {
            "Variables": "HIGH",
            "Conditionals": "MEDIUM",
            "Functions": "HIGH",
            "User Input": "HIGH",
        },
        "ada,ben,ivo,jun": {
            "Variables": "LOW",
            "Conditionals": "LOW",
            "Functions": "HIGH",
            "User Input": "HIGH",
        },
    }
    for number, (students, levels) in enumerate(expected.items()):
        output = tmp_path / f"run{number}"
        run = evaluate(fake, tmp_path, "--output", str(output), "--students", students, *cache)
        assert run.returncode == 0, run.stderr
        summary = read_summary(output)
        assert summary["calls"]["upstream"] == 0  # every answer from the cache
        assert read_confidence(output) == levels == expected_confidence(summary)


def test_a_rerun_takes_every_answer_from_the_cache_and_a_changed_prompt_asks_again(fake, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(SAMPLE, dataset)
    cache = ["--cache-dir", str(tmp_path / "cache")]

    first = evaluate(fake, tmp_path, "--output", "one", *cache, dataset=dataset)
    assert first.returncode == 0, first.stderr
    before = len(chat_requests(fake))
    second = evaluate(fake, tmp_path, "--output", "two", *cache, dataset=dataset)
    assert second.returncode == 0, second.stderr
    rerun = chat_requests(fake)[before:]

    # Only lea's request, which the upstream refused, is sent again: refusals are not cached.
    assert [fake.responder.student_of(r) for r in rerun] == [REJECTED]
    summary = read_summary(tmp_path / "two")
    assert summary["calls"] == {"upstream": 1, "cached": 11}
    assert summary["fresh_usage"] == NO_TOKENS
    assert summary["usage"] == TOKENS_OF_11_ANSWERS
    assert summary["overall"] == EXPECTED_OVERALL

    prompt = dataset / "prompt.txt"
    prompt.write_text(prompt.read_text(encoding="utf-8") + "\nBe strict.\n", encoding="utf-8")
    before = len(chat_requests(fake))
    third = evaluate(fake, tmp_path, "--output", "three", *cache, dataset=dataset)
    assert third.returncode == 0, third.stderr
    assert len(chat_requests(fake)) - before == 12
    assert read_summary(tmp_path / "three")["calls"] == {"upstream": 12, "cached": 0}

    # --refresh-cache asks again although every answer is cached; --no-cache keeps nothing.
    refresh = evaluate(fake, tmp_path, "--output", "four", "--refresh-cache", *cache, dataset=dataset)
    assert refresh.returncode == 0, refresh.stderr
    assert read_summary(tmp_path / "four")["calls"] == {"upstream": 12, "cached": 0}
    nothing_kept = ["--no-cache", "--cache-dir", str(tmp_path / "unused")]
    uncached = evaluate(
        fake, tmp_path, "--output", "five", "--students", "ada", *nothing_kept, dataset=dataset
    )
    assert uncached.returncode == 0, uncached.stderr
    assert read_summary(tmp_path / "five")["calls"] == {"upstream": 1, "cached": 0}
    assert not (tmp_path / "unused").exists()


def test_a_measure_below_its_threshold_fails_the_command(fake, first_run, tmp_path):
    _, workdir, _ = first_run
    cache = ["--cache-dir", str(workdir / ".assessment-cache")]  # the first run's answers
    limits = tmp_path / "thresholds.json"
    limits.write_text(json.dumps({"accuracy": 0.8, "pass_fail_accuracy": 0.95, "max_failed": 2}))

    met = evaluate(fake, tmp_path, "--output", "met", "--thresholds", str(limits), *cache)
    assert met.returncode == 0, met.stdout + met.stderr
    assert read_summary(tmp_path / "met")["thresholds"]["passed"] is True

    # A flag wins over the file: 82.5% is below 85%, and the concept minimum fails on Variables.
    missed = evaluate(
        fake,
        tmp_path,
        "--output",
        "missed",
        "--thresholds",
        str(limits),
        "--min-accuracy",
        "0.85",
        "--min-concept-accuracy",
        "0.75",
        *cache,
    )
    assert missed.returncode == 1, missed.stdout + missed.stderr
    checks = read_summary(tmp_path / "missed")["thresholds"]["checks"]
    failing = {c["name"]: c["value"] for c in checks if not c["passed"]}
    assert failing == {"accuracy": 0.825, "concept_accuracy[Variables]": 0.7}
    assert len(checks) == 3 + 4  # three overall limits, one per key concept
    assert "FAIL accuracy: 0.825 (needs >= 0.85)" in missed.stdout
    report = read_report(tmp_path / "missed")
    assert report.measures["thresholds.passed"].strip() == "FAIL"

    too_many_failures = evaluate(fake, tmp_path, "--output", "failures", "--max-failed", "1", *cache)
    assert too_many_failures.returncode == 1


def test_a_sample_of_students_is_the_same_for_the_same_seed(fake, first_run, tmp_path):
    _, workdir, _ = first_run
    cache = ["--cache-dir", str(workdir / ".assessment-cache")]
    runs = []
    for name in ("a", "b"):
        result = evaluate(fake, tmp_path, "--output", name, "--sample", "5", "--seed", "7", *cache)
        assert result.returncode == 0, result.stderr
        runs.append(read_summary(tmp_path / name))
    chosen = [r["student"] for r in runs[0]["results"]]
    assert len(chosen) == 5 and chosen == [r["student"] for r in runs[1]["results"]]
    assert runs[0]["selection"] == {"students": 5, "sample": 5, "seed": 7}

    subset = evaluate(fake, tmp_path, "--output", "c", "--students", "ada,ivo", "--students", "jun", *cache)
    assert subset.returncode == 0, subset.stderr
    summary = read_summary(tmp_path / "c")
    assert [r["student"] for r in summary["results"]] == ["ada", "ivo", "jun"]
    # ada all right; ivo 2 wrong (one flip); jun 2 wrong (one flip): 8 of 12 exact, 10 of 12 pass/fail.
    assert (summary["overall"]["exact_matches"], summary["overall"]["pass_fail_matches"]) == (8, 10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--students", "ada,nobody"], "--students: not in labels.csv: nobody"),
        (["--sample", "13"], "--sample 13: choose from 1 to 12 students"),
        (["--min-accuracy", "1.5"], "threshold 'accuracy' is 1.5"),
        (["--temperature", "3"], "--temperature 3: use a number from 0 to 2"),
    ],
)
def test_bad_options_stop_the_command_with_one_clear_line(fake, tmp_path, args, message):
    result = evaluate(fake, tmp_path, "--output", "out", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_broken_dataset_is_named_in_the_error(fake, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(SAMPLE, dataset)
    (dataset / "students" / "kai.js").unlink()
    result = evaluate(fake, tmp_path, dataset=dataset)
    assert result.returncode == 2
    assert "students/kai.js is missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bedrock_model_is_graded_by_bedrock_as_the_assessment_route_does(fake, tmp_path):
    with FakeBedrock() as bedrock:
        labels = load_dataset(SAMPLE).labels
        bedrock.enqueue(Answer(model_answer(labels["ada"], "ada"), input_tokens=120, output_tokens=40))
        env = {
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        before = len(chat_requests(fake))
        result = evaluate(
            fake, tmp_path, "--output", "out", "--students", "ada", "--model", "bedrock/claude-x", env=env
        )
        assert result.returncode == 0, result.stderr
        assert len(chat_requests(fake)) == before  # nothing went to the OpenAI-compatible upstream
        assert [(r.operation, r.model_id) for r in bedrock.requests] == [("converse", "claude-x")]
    summary = read_summary(tmp_path / "out")
    assert summary["parameters"]["model"] == "bedrock/claude-x"
    assert summary["overall"]["accuracy"] == 1.0
    assert summary["usage"] == {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160}
    assert [r["agent"] for r in summary["results"]] == ["bedrock"]


def test_without_a_provider_key_nothing_is_graded_and_the_command_says_why(fake, tmp_path):
    result = evaluate(fake, tmp_path, "--output", "out", "--students", "ada,ben", env={"OPENAI_API_KEY": ""})
    assert result.returncode == 3
    assert "no student could be graded" in result.stderr and "OPENAI_API_KEY" in result.stderr
    summary = read_summary(tmp_path / "out")
    assert summary["students"] == {"evaluated": 2, "graded": 0, "failed": 2}
    assert [f["status"] for f in summary["failed"]] == [503, 503]
    assert summary["calls"] == {"upstream": 0, "cached": 0}
    assert summary["overall"]["accuracy"] is None
    # Nothing shows the AI grades any key concept well: every one is LOW, none left out.
    assert read_confidence(tmp_path / "out") == dict.fromkeys(summary["key_concepts"], "LOW")


# --- through a batch (--batch) -----------------------------------------------------------------------


def batch_calls(fake: FakeOpenAI) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in fake.requests if "/files" in r.path or "/batches" in r.path]


def test_a_batch_run_grades_as_the_normal_run_at_the_batch_price(fake, first_run, tmp_path):
    _, first_workdir, _ = first_run
    normal = read_summary(first_workdir / "report")
    chats_before, calls_before = len(chat_requests(fake)), len(batch_calls(fake))

    result = evaluate(fake, tmp_path, "--output", "batch", "--batch", "--cache-dir", "cache")

    assert result.returncode == 0, result.stderr
    assert len(chat_requests(fake)) == chats_before  # not one chat call: one batch
    calls = batch_calls(fake)[calls_before:]
    assert calls[:2] == [("POST", "/v1/files"), ("POST", "/v1/batches")]
    assert calls.count(("POST", "/v1/batches")) == 1
    batch_id = next(iter(reversed(fake.media.batches)))
    batch = fake.media.batches[batch_id]
    assert (batch["endpoint"], batch["completion_window"], batch["status"]) == (
        "/v1/chat/completions",
        "24h",
        "completed",
    )
    upload = next(r for r in reversed(fake.requests_to("/files")) if r.method == "POST")
    assert b'name="purpose"\r\n\r\nbatch\r\n' in upload.raw
    lines = [json.loads(line) for line in fake.media.contents[batch["input_file_id"]].splitlines()]
    assert len(lines) == 12 and len({line["custom_id"] for line in lines}) == 12
    assert {(line["method"], line["url"]) for line in lines} == {("POST", "/v1/chat/completions")}
    # The very bodies the normal run sent, one per student.
    assert sorted(json.dumps(line["body"], sort_keys=True) for line in lines) == sorted(
        json.dumps(request.body, sort_keys=True) for request in first_run[2]
    )

    summary = read_summary(tmp_path / "batch")
    for same in ("students", "overall", "per_concept", "failed", "usage", "fresh_usage", "calls", "results"):
        assert summary[same] == normal[same], same
    assert summary["batch"] == {"id": batch_id, "status": "completed", "requests": 12}
    listed = (3300 * 0.15 + 550 * 0.6) / 1e6  # gpt-4o-mini's listed prices, 11 answers of 300 + 50
    assert normal["cost"] == {"pricing": "listed", "share": 1.0, "usd": listed, "fresh_usd": listed}
    assert summary["cost"]["pricing"] == "batch" and summary["cost"]["share"] == 0.5
    assert summary["cost"]["usd"] == pytest.approx(listed / 2, abs=1e-6)
    assert f"at batch prices (50% of the listed price), $0.0004 spent now; batch {batch_id}" in result.stdout
    assert f"{batch_id}: 12 requests sent at the batch price" in result.stderr
    assert "12/12 requests" in result.stderr  # the progress bar counted the batch's requests
    report = read_report(tmp_path / "batch")
    assert " ".join(report.measures["cost.pricing"].split()) == "at batch prices"
    assert report.measures["batch.id"] == batch_id

    # The answers are cached as a normal run's are: a rerun sends only lea's refused request.
    rerun = evaluate(fake, tmp_path, "--output", "again", "--batch", "--cache-dir", "cache")
    assert rerun.returncode == 0, rerun.stderr
    again = read_summary(tmp_path / "again")
    assert again["calls"] == {"upstream": 1, "cached": 11}
    assert again["batch"]["requests"] == 1 and again["overall"] == normal["overall"]
    assert len(chat_requests(fake)) == chats_before


def test_a_failed_batch_is_a_clear_error_naming_it(fake, tmp_path):
    fake.media.fail_batch = [
        {"code": "invalid_model", "message": "Batches of this model are off.", "line": 1}
    ]
    try:
        result = evaluate(fake, tmp_path, "--output", "out", "--batch", "--no-cache", "--students", "ada")
    finally:
        fake.media.fail_batch = None
    batch_id = next(iter(reversed(fake.media.batches)))
    assert result.returncode == 3
    assert (
        f"error: The batch {batch_id} failed: line 1: Batches of this model are off. (invalid_model)"
        in result.stderr
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_a_refused_batch_upload_is_a_clear_error(fake, tmp_path):
    fake.enqueue(Fail(403, "This organisation may not use the Batch API."), path="/files")
    result = evaluate(fake, tmp_path, "--output", "out", "--batch", "--no-cache", "--students", "ada")
    assert result.returncode == 3
    assert (
        "error: Could not upload the batch's input file: "
        "This organisation may not use the Batch API. (HTTP 403)" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_ctrl_c_cancels_the_batch_being_waited_for(fake, tmp_path):
    settings = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    settings |= {"PYTHONPATH": str(ROOT), "OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": PROVIDER_KEY}
    known = set(fake.media.batches)
    fake.media.batch_polls = 1000
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "lab.evaluate", str(SAMPLE), "--batch", "--no-cache", "--output", "out"],
            cwd=tmp_path,
            env=settings,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: fake.media.polls.keys() - known, timeout=30)  # created and polled once
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        fake.media.batch_polls = 1
    (batch_id,) = fake.media.batches.keys() - known
    assert process.returncode == 130
    assert fake.media.batches[batch_id]["status"] == "cancelled"
    assert ("POST", f"/v1/batches/{batch_id}/cancel") in batch_calls(fake)
    assert f"Cancelled the batch {batch_id}." in stderr and "Traceback" not in stderr


def test_a_bedrock_model_cannot_go_through_a_batch(fake, tmp_path):
    result = evaluate(fake, tmp_path, "--output", "out", "--batch", "--model", "bedrock/claude-x")
    assert result.returncode == 2
    assert "--batch: bedrock/claude-x is served by bedrock, which has no Batch API here" in result.stderr


def test_a_batch_through_the_proxy_belongs_to_the_lab_s_client_and_is_charged_at_half_price(tmp_path):
    lab_key, other_key = (
        "aip_lab-batch-teacher-00000000000000000000001",
        "aip_lab-batch-other-000000000000000000000002",
    )
    settings = {
        "OPENAI_API_KEY": PROVIDER_KEY,
        "AIPROXY_CLIENT_KEYS": json.dumps(
            {"lab": {"keys": [hash_key(lab_key)]}, "other": {"keys": [hash_key(other_key)]}}
        ),
        "LOG_FORMAT": "json",
    }
    with proxy_with_fake_openai(settings) as (fake, server):
        fake.responder = ScriptedModel(SAMPLE)
        proxy = server.url + "/v1"
        result = evaluate(
            fake,
            tmp_path,
            "--output",
            "out",
            "--batch",
            env={"OPENAI_BASE_URL": proxy, "OPENAI_API_KEY": lab_key},
        )
        assert result.returncode == 0, result.stderr
        assert chat_requests(fake) == []
        (batch_id,) = fake.media.batches
        mine = fetch(proxy + "/batches", headers={"Authorization": f"Bearer {lab_key}"})
        theirs = fetch(proxy + "/batches", headers={"Authorization": f"Bearer {other_key}"})
        assert [b["id"] for b in json.loads(mine.body)["data"]] == [batch_id]
        assert json.loads(theirs.body)["data"] == []
        output = fake.media.batches[batch_id]["output_file_id"]
        refused = fetch(f"{proxy}/files/{output}/content", headers={"Authorization": f"Bearer {other_key}"})
        assert refused.status == 404
        wait_until(lambda: any(r.get("batch_id") == batch_id for r in server.log_records()), timeout=5)
        (charge,) = [r for r in server.log_records() if r.get("batch_id") == batch_id]
    summary = read_summary(tmp_path / "out")
    assert summary["overall"] == EXPECTED_OVERALL and summary["calls"] == {"upstream": 12, "cached": 0}
    assert charge["client"] == "lab"
    assert charge["cost_usd"] == pytest.approx(summary["cost"]["usd"], abs=1e-6)

"""The accuracy lab's confidence levels and the report's wording, colours and failure notices.

The report in a real browser is tests/e2e/test_evaluation_report_browser.py; here are the pieces
a browser run on the sample cannot reach (every threshold boundary, every heat-map shade, runs
chosen by sample or by name).
"""

from __future__ import annotations

import json

import pytest

from lab.confidence import confidence, confidence_by_concept
from lab.report import (
    contrast,
    failure_causes,
    heat_colours,
    mark,
    parameter_rows,
    readable_time,
    render_html,
    thousands,
    threshold_rows,
    write_outputs,
)

E, C, L, N = "Extensive Evidence", "Convincing Evidence", "Limited Evidence", "No Evidence"


@pytest.mark.parametrize(
    ("accuracy", "level"),
    [
        (1.0, "HIGH"),
        (0.85, "HIGH"),
        (0.8499, "MEDIUM"),
        (0.8, "MEDIUM"),
        (0.7999, "LOW"),
        (0.0, "LOW"),
        (None, "LOW"),  # no graded student: nothing shows the AI grades the concept well
    ],
)
def test_confidence_follows_the_original_services_thresholds(accuracy, level):
    assert confidence(accuracy) == level


def test_confidence_json_keeps_the_rubrics_order_and_spelling(tmp_path):
    summary = build_summary(
        per_concept={"Variables": 0.9, "user input (keys)": 0.8, "Äpfel": 0.5, "Loops": None},
    )
    write_outputs(summary, tmp_path)
    text = (tmp_path / "confidence.json").read_text(encoding="utf-8")
    assert list(json.loads(text).items()) == [
        ("Variables", "HIGH"),
        ("user input (keys)", "MEDIUM"),
        ("Äpfel", "LOW"),
        ("Loops", "LOW"),
    ]
    assert confidence_by_concept(summary) == json.loads(text)
    assert "Äpfel" in text  # as spelled in the rubric, not \u-escaped


def test_a_time_reads_as_a_date_and_a_utc_clock():
    assert readable_time("2026-11-30T14:05:09+00:00") == "30 November 2026, 14:05 UTC"
    assert readable_time("2026-12-01T00:30:00+01:00") == "30 November 2026, 23:30 UTC"
    assert readable_time("2027-01-02T09:00:00+00:00") == "2 January 2027, 09:00 UTC"


def test_counts_have_thousands_separators():
    assert [thousands(n) for n in (0, 950, 3850, 1234567)] == ["0", "950", "3,850", "1,234,567"]


def test_each_cell_is_marked_same_grade_different_grade_or_pass_fail_flip():
    # Rows are labels, columns grades, in the order E, C, L, N; E and C pass.
    assert [[mark(i, j) for j in range(4)] for i in range(4)] == [
        ["✓", "≠", "✗", "✗"],
        ["≠", "✓", "✗", "✗"],
        ["✗", "✗", "✓", "≠"],
        ["✗", "✗", "≠", "✓"],
    ]


@pytest.mark.parametrize("cell_mark", ["✓", "≠", "✗"])
def test_heat_map_text_is_legible_on_every_shade(cell_mark):
    # WCAG AA for body text: 4.5:1, whatever the count and the largest count of the matrix.
    for largest in range(1, 41):
        for count in range(largest + 1):
            background, text = heat_colours(count, largest, cell_mark)
            assert contrast(background, text) >= 4.5, (cell_mark, count, largest)


def test_the_three_marks_are_shaded_in_distinct_colours():
    shades = {cell_mark: heat_colours(5, 5, cell_mark)[0] for cell_mark in ("✓", "≠", "✗")}
    assert len(set(shades.values())) == 3


def build_summary(**changes) -> dict:
    """A summary as lab.summary builds it: 10 labelled students; `per_concept` maps each key
    concept to its pass/fail accuracy (None: nothing graded)."""
    per_concept = changes.pop("per_concept", {"Variables": 0.9})
    graded = changes.pop("graded", 10)
    failed = changes.pop("failed", [])
    measures = {
        concept: {
            "count": graded,
            "exact_matches": 0,
            "accuracy": None if accuracy is None else 0.5,
            "pass_fail_matches": 0,
            "pass_fail_accuracy": accuracy,
            "kappa": None,
            "confusion_matrix": [[0] * 4 for _ in range(4)],
        }
        for concept, accuracy in per_concept.items()
    }
    summary = {
        "dataset": "lesson-3",
        "dataset_path": "datasets/lesson-3",
        "created": "2026-11-30T14:05:09+00:00",
        "prompt": "Grade it.",
        "rubric": "Key Concept,Instructions\n" + "".join(f'"{c}",Look.\n' for c in per_concept),
        "examples": 0,
        "parameters": {
            "model": "gpt-4o-mini",
            "temperature": 0.2,
            "num-responses": 1,
            "remove-comments": False,
        },
        "selection": {"students": graded + len(failed), "sample": None, "seed": None},
        "key_concepts": list(per_concept),
        "grades": [E, C, L, N],
        "students": {"evaluated": graded + len(failed), "graded": graded, "failed": len(failed)},
        "labelled_students": 10,
        "overall": next(iter(measures.values())),
        "per_concept": measures,
        "failed": failed,
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "calls": {"upstream": 0, "cached": 0},
        "fresh_usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "results": [],
    }
    return summary | changes


def words(summary: dict) -> dict[str, str]:
    return {name: value for _, name, value in parameter_rows(summary)}


def test_parameters_read_as_a_teacher_would_say_them():
    plain = words(build_summary())
    assert plain == {
        "AI model": "gpt-4o-mini",
        "Temperature": "0.2 (how much the AI's answers vary from run to run; 0 the least)",
        "Answers per student": "1",
        "Comments removed": "no: programs were graded with their comments",
        "Example programs shown to the AI": "0 (with their grades)",
        "Students": "all 10 labelled students",
    }
    voted = words(
        build_summary(
            parameters={"model": "gpt-4o", "temperature": 0.7, "num-responses": 3, "remove-comments": True},
            selection={"students": 4, "sample": 4, "seed": 7},
        )
    )
    assert voted["Answers per student"] == "3 (each grade is their majority vote)"
    assert voted["Comments removed"] == "yes: comments were taken out of each program before grading"
    assert voted["Students"] == (
        "4 of the 10 labelled students, picked at random (seed 7: the same seed picks the same students)"
    )
    named = words(build_summary(selection={"students": 3, "sample": None, "seed": None}))
    assert named["Students"] == "3 of the 10 labelled students, chosen by name"


def test_failures_are_grouped_by_cause_most_frequent_first_then_by_status():
    failed = [
        {"student": "a", "status": 502, "message": "answer 1: missing key concept 'Loops'"},
        {"student": "b", "status": 429, "message": "The model's provider is rate limiting: slow down"},
        {"student": "c", "status": 502, "message": "answer 1: missing key concept 'Loops'"},
        {"student": "d", "status": 502, "message": "answer 1: not a table"},
        {"student": "e", "status": 418, "message": "I'm a teapot"},
    ]
    assert failure_causes(failed) == [
        {
            "status": 502,
            "cause": "no usable answer from the AI",
            "count": 3,
            "message": "answer 1: missing key concept 'Loops'",
            "other_messages": 1,
        },
        {
            "status": 418,
            "cause": "the grading failed (HTTP 418)",
            "count": 1,
            "message": "I'm a teapot",
            "other_messages": 0,
        },
        {
            "status": 429,
            "cause": "the AI provider was rate limiting",
            "count": 1,
            "message": "The model's provider is rate limiting: slow down",
            "other_messages": 0,
        },
    ]


def test_threshold_checks_are_described_in_words():
    checks = [
        {"name": "accuracy", "limit": 0.85, "value": 0.825, "passed": False},
        {"name": "kappa", "limit": 0.7, "value": None, "passed": False},
        {"name": "concept_pass_fail_accuracy[User Input]", "limit": 0.9, "value": 1.0, "passed": True},
        {"name": "max_failed", "limit": 0, "value": 2, "passed": False},
    ]
    assert [(r["measure"], r["needs"], r["value"]) for r in threshold_rows(checks)] == [
        ("Exact-match accuracy, all key concepts", "at least 85.0%", "82.5%"),
        ("Kappa, all key concepts", "at least 0.7", "undefined (nothing graded)"),
        ("Pass/fail accuracy of User Input", "at least 90.0%", "100.0%"),
        ("Failed assessments", "at most 0", "2"),
    ]


def test_a_run_with_no_student_chosen_says_so_and_shows_no_measures():
    html = render_html(build_summary(graded=0, selection={"students": 0, "sample": None, "seed": None}))
    assert "No student was chosen" in html
    assert "data-matrix" not in html and "Per key concept" not in html

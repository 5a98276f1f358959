"""The JSON summary of an evaluation: parameters, every measure, failures, tokens, per-student grades.

The HTML report is drawn from this same dictionary, so the two always show the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from lab.dataset import Dataset
from lab.metrics import agreement, passes
from lab.runner import Parameters, StudentResult
from service.assessment.grades import GRADES

TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def build_summary(
    dataset: Dataset,
    parameters: Parameters,
    results: Sequence[StudentResult],
    *,
    selection: dict[str, Any],
    calls: dict[str, int],
    usage: dict[str, int],
    fresh_usage: dict[str, int],
    cost: dict[str, Any] | None = None,
    batch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`selection` says how the students were chosen; `calls` counts upstream and cached answers;
    `usage` is the tokens of every answer used (failed assessments' answers too), `fresh_usage`
    those fetched from the upstream in this run; `cost` what they cost (`lab.cost.run_cost`);
    `batch` the batch the answers came from (`--batch`: its id, status and request count)."""
    graded = [r for r in results if not r.failed]
    pairs = {
        concept: [(dataset.labels[r.student][concept], r.rows[concept]["Grade"]) for r in graded]
        for concept in dataset.key_concepts
    }
    return {
        "dataset": dataset.name,
        "dataset_path": str(dataset.root),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "prompt": dataset.prompt,
        "rubric": dataset.rubric,
        "examples": len(dataset.examples),
        "parameters": parameters.as_json(),
        "selection": selection,
        "key_concepts": list(dataset.key_concepts),
        "grades": list(GRADES),
        "students": {"evaluated": len(results), "graded": len(graded), "failed": len(results) - len(graded)},
        "labelled_students": len(dataset.labels),  # how many the evaluated ones were chosen from
        "overall": agreement(pair for concept in dataset.key_concepts for pair in pairs[concept]).as_json(),
        "per_concept": {concept: agreement(pairs[concept]).as_json() for concept in dataset.key_concepts},
        "failed": [{"student": r.student, **(r.error or {})} for r in results if r.failed],
        "usage": _tokens(usage),
        "calls": calls,
        "fresh_usage": _tokens(fresh_usage),
        "cost": cost,
        "batch": batch,
        "results": [_student_row(dataset, r) for r in results],
    }


def _tokens(usage: dict[str, int]) -> dict[str, int]:
    return {name: usage.get(name, 0) for name in TOKEN_FIELDS}


def _student_row(dataset: Dataset, result: StudentResult) -> dict[str, Any]:
    grades = []
    for concept in dataset.key_concepts:
        label = dataset.labels[result.student][concept]
        row = result.rows.get(concept)
        grade = row["Grade"] if row else None
        grades.append(
            {
                "key_concept": concept,
                "label": label,
                "grade": grade,
                "exact": None if grade is None else grade == label,
                "pass_fail": None if grade is None else passes(grade) == passes(label),
                "votes": row.get("Votes", []) if row else [],
                "observations": row.get("Observations", "") if row else "",
                "reason": row.get("Reason", "") if row else "",
            }
        )
    return {"student": result.student, "failed": result.failed, "agent": result.agent, "grades": grades}

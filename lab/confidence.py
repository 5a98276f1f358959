"""confidence.json: how far a teacher can trust the AI's grade of each key concept.

Clients of the original service read, per lesson, a JSON object mapping every key concept (as the
rubric spells it, in rubric order) to "HIGH", "MEDIUM" or "LOW", and show it next to the AI's
grade. As in the original, the level comes from the pass/fail accuracy on labelled data: a teacher
mostly acts on pass versus fail, so that is the accuracy that decides.

The accuracy used is the one summary.json holds (rounded to 4 decimals), so the file, the summary
and the report never disagree. A key concept with no graded student (every assessment failed) is
LOW: nothing shows the AI grades it well, and clients still find every key concept in the file.
"""

from __future__ import annotations

from typing import Any

HIGH, MEDIUM, LOW = "HIGH", "MEDIUM", "LOW"
# (lowest pass/fail accuracy, level), best first: the original service's thresholds.
LEVELS = ((0.85, HIGH), (0.8, MEDIUM))


def confidence(pass_fail_accuracy: float | None) -> str:
    if pass_fail_accuracy is None:
        return LOW
    for lowest, level in LEVELS:
        if pass_fail_accuracy >= lowest:
            return level
    return LOW


def confidence_by_concept(summary: dict[str, Any]) -> dict[str, str]:
    """The content of confidence.json, from the JSON summary (per_concept is in rubric order)."""
    return {
        concept: confidence(measures["pass_fail_accuracy"])
        for concept, measures in summary["per_concept"].items()
    }

"""Combine several valid answers into one: per key concept, the most frequent grade wins.

A tie goes to the grade that appeared first (in answer order). Observations and Reason come from
the first answer that gave the winning grade; `Votes` lists every answer's grade in order.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from service.assessment.grades import GRADE, KEY_CONCEPT, OBSERVATIONS, REASON, Row


def vote(answers: list[list[Row]]) -> list[dict[str, Any]]:
    """`answers` are validated (same key concepts, same order); returns the rows with `Votes`."""
    if not answers:
        raise ValueError("vote() needs at least one answer")
    result = []
    for index, first in enumerate(answers[0]):
        rows = [answer[index] for answer in answers]
        votes = [row[GRADE] for row in rows]
        counts = Counter(votes)
        top = max(counts.values())
        winner = next(grade for grade in votes if counts[grade] == top)  # first in answer order
        source = next(row for row in rows if row[GRADE] == winner)
        result.append(
            {
                KEY_CONCEPT: first[KEY_CONCEPT],
                OBSERVATIONS: source[OBSERVATIONS],
                GRADE: winner,
                REASON: source[REASON],
                "Votes": votes,
            }
        )
    return result

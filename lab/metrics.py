"""How well the model's grades agree with the human labels.

Every measure is computed from (human label, model grade) pairs, one pair per student and key
concept. Students whose assessment failed have no model grade and are left out (they are counted
and listed separately).

- accuracy: the share of pairs where the two grades are the same.
- pass/fail accuracy: the share of pairs on the same side of the pass line (Extensive and
  Convincing pass; Limited and No do not).
- confusion matrix: rows are the human label, columns the model's grade, both in `GRADES` order.
- quadratic-weighted kappa (Cohen): agreement corrected for chance, where a disagreement costs the
  square of its distance on the grade scale (Extensive/No costs 9 times Extensive/Convincing).
  1 is perfect agreement, 0 is what chance gives, below 0 is worse than chance. It is undefined
  (None) when chance alone cannot disagree, e.g. when every label and grade is the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lab.dataset import PASSING_GRADES
from service.assessment.grades import GRADES

Pair = tuple[str, str]  # (human label, model grade), canonical grade names


def confusion_matrix(pairs: Iterable[Pair], grades: Sequence[str] = GRADES) -> list[list[int]]:
    index = {grade: i for i, grade in enumerate(grades)}
    matrix = [[0] * len(grades) for _ in grades]
    for label, grade in pairs:
        matrix[index[label]][index[grade]] += 1
    return matrix


def quadratic_weighted_kappa(matrix: Sequence[Sequence[int]]) -> float | None:
    """Cohen's kappa with quadratic weights, from a square confusion matrix of counts.

    kappa = 1 - sum(w * observed) / sum(w * expected), with w[i][j] = (i - j)^2 / (k - 1)^2 and
    expected[i][j] = row_total[i] * column_total[j] / total (what two independent raters with the
    same grade frequencies would produce).
    """
    size = len(matrix)
    total = sum(sum(row) for row in matrix)
    if total == 0 or size < 2:
        return None
    rows = [sum(row) for row in matrix]
    columns = [sum(matrix[i][j] for i in range(size)) for j in range(size)]
    observed = expected = 0.0
    for i in range(size):
        for j in range(size):
            weight = (i - j) ** 2 / (size - 1) ** 2
            observed += weight * matrix[i][j]
            expected += weight * rows[i] * columns[j] / total
    if expected == 0:
        return None
    return 1 - observed / expected


@dataclass(frozen=True)
class Agreement:
    """The measures of one set of pairs (one key concept, or all of them)."""

    count: int
    exact_matches: int
    pass_fail_matches: int
    confusion_matrix: list[list[int]]
    kappa: float | None

    @property
    def accuracy(self) -> float | None:
        return self.exact_matches / self.count if self.count else None

    @property
    def pass_fail_accuracy(self) -> float | None:
        return self.pass_fail_matches / self.count if self.count else None

    def as_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "exact_matches": self.exact_matches,
            "accuracy": _rounded(self.accuracy),
            "pass_fail_matches": self.pass_fail_matches,
            "pass_fail_accuracy": _rounded(self.pass_fail_accuracy),
            "kappa": _rounded(self.kappa),
            "confusion_matrix": self.confusion_matrix,
        }


def passes(grade: str) -> bool:
    return grade in PASSING_GRADES


def agreement(pairs: Iterable[Pair]) -> Agreement:
    pairs = list(pairs)
    matrix = confusion_matrix(pairs)
    return Agreement(
        count=len(pairs),
        exact_matches=sum(label == grade for label, grade in pairs),
        pass_fail_matches=sum(passes(label) == passes(grade) for label, grade in pairs),
        confusion_matrix=matrix,
        kappa=quadratic_weighted_kappa(matrix),
    )


def _rounded(value: float | None) -> float | None:
    # Four decimals: enough to compare runs, short enough to read in JSON.
    return None if value is None else round(value, 4)

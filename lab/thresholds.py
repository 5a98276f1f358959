"""The CI gate: minimum measures an evaluation must reach (and the most failures it may have).

A thresholds file is a JSON object with any of these keys (the command's flags of the same
meaning win over it):

    {"accuracy": 0.7, "pass_fail_accuracy": 0.85, "kappa": 0.6,
     "concept_accuracy": 0.5, "concept_pass_fail_accuracy": 0.7, "max_failed": 0}

`concept_...` minimums apply to every key concept. A measure that is undefined (no graded
student, or a kappa with no chance disagreement) does not reach any minimum.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# name -> (what it limits, lowest allowed value, highest allowed value)
LIMITS: dict[str, tuple[str, float, float]] = {
    "accuracy": ("minimum overall exact-match accuracy", 0, 1),
    "pass_fail_accuracy": ("minimum overall pass/fail accuracy", 0, 1),
    "kappa": ("minimum overall quadratic-weighted kappa", -1, 1),
    "concept_accuracy": ("minimum exact-match accuracy of every key concept", 0, 1),
    "concept_pass_fail_accuracy": ("minimum pass/fail accuracy of every key concept", 0, 1),
    "max_failed": ("most failed assessments allowed", 0, math.inf),
}


class ThresholdsError(ValueError):
    """A thresholds file or flag is not usable; the message says which and why."""


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "accuracy" or "concept_accuracy[Loops]"
    limit: float
    value: float | None
    passed: bool

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "limit": self.limit, "value": self.value, "passed": self.passed}

    def describe(self) -> str:
        shown = "undefined" if self.value is None else f"{self.value:g}"
        relation = "<=" if self.name == "max_failed" else ">="
        return f"{'ok  ' if self.passed else 'FAIL'} {self.name}: {shown} (needs {relation} {self.limit:g})"


def validate(thresholds: dict[str, Any], source: str) -> dict[str, float]:
    checked: dict[str, float] = {}
    for name, value in thresholds.items():
        if name not in LIMITS:
            raise ThresholdsError(f"{source}: unknown threshold '{name}'; use: {', '.join(LIMITS)}.")
        _, low, high = LIMITS[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            upper = "" if math.isinf(high) else f" to {high:g}"
            raise ThresholdsError(
                f"{source}: threshold '{name}' is {json.dumps(value)}; use a number from {low:g}{upper}."
            )
        if name == "max_failed" and not float(value).is_integer():
            raise ThresholdsError(f"{source}: threshold 'max_failed' must be a whole number.")
        checked[name] = value
    return checked


def load_thresholds(path: str | Path) -> dict[str, float]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ThresholdsError(f"{path}: no such thresholds file.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ThresholdsError(f"{path} is not valid JSON: {error}.") from None
    if not isinstance(data, dict):
        raise ThresholdsError(f'{path} must hold a JSON object, e.g. {{"accuracy": 0.8}}.')
    return validate(data, str(path))


def check(thresholds: dict[str, float], summary: dict[str, Any]) -> list[Check]:
    """Compare the JSON summary's measures with `thresholds`; one Check per limit applied."""
    checks = []
    overall = summary["overall"]
    for name in ("accuracy", "pass_fail_accuracy", "kappa"):
        if name in thresholds:
            checks.append(_at_least(name, thresholds[name], overall[name]))
    for name in ("accuracy", "pass_fail_accuracy"):
        limit = thresholds.get(f"concept_{name}")
        if limit is not None:
            for concept, measures in summary["per_concept"].items():
                checks.append(_at_least(f"concept_{name}[{concept}]", limit, measures[name]))
    if "max_failed" in thresholds:
        failed = summary["students"]["failed"]
        checks.append(
            Check("max_failed", thresholds["max_failed"], failed, failed <= thresholds["max_failed"])
        )
    return checks


def _at_least(name: str, limit: float, value: float | None) -> Check:
    return Check(name, limit, value, value is not None and value >= limit)

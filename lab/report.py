"""The outputs of an evaluation: summary.json, confidence.json and report.html.

The report is one self-contained file (inline CSS, no script) drawn from the JSON summary, written
for a teacher: it reads on a phone, and its meaning never rests on colour alone (every agreement
or disagreement also carries a symbol and words, explained in a legend).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from lab.confidence import LEVELS, confidence, confidence_by_concept
from lab.dataset import PASSING_GRADES
from service.assessment.grades import GRADES
from service.assessment.rubric import csv_rows

_TEMPLATES = Path(__file__).with_name("templates")
# Column and row headings of the confusion matrices: "Extensive", "Convincing", ...
SHORT_GRADES = {grade: grade.removesuffix(" Evidence") for grade in GRADES}
# GRADES runs from best to worst, so the passing grades come first: the heat maps draw the pass
# line after them.
PASS_LINE = next(i for i, grade in enumerate(GRADES) if grade not in PASSING_GRADES)

# The marks of agreement, shown in the heat maps and the per-student table (and the legend).
AGREE, DIFFERENT, FLIPPED = "✓", "≠", "✗"

# Why an assessment failed, by the HTTP status the route would have answered (grader._mapped).
CAUSES = {
    400: "the AI provider refused the request",
    429: "the AI provider was rate limiting",
    502: "no usable answer from the AI",
    503: "no key for the AI provider",
    504: "the AI provider was too slow",
}

# Heat-map tints: blue for agreement, orange for a different grade, vermilion for a pass/fail
# flip (Okabe-Ito colours, told apart by people with red-green colour blindness).
_TINTS = {AGREE: (0, 114, 178), DIFFERENT: (230, 159, 0), FLIPPED: (213, 94, 0)}


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def decimal(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"  # as rounded in the summary: 0.8, 0.9315


def thousands(value: int) -> str:
    return f"{value:,}"


def dollars(value: float | None) -> str:
    """US dollars as a person reads them: cents for a dollar or more, else four decimals."""
    if value is None:
        return "n/a"
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def describe_cost(summary: dict[str, Any]) -> str:
    """The cost of the run in one line: the terminal's, and the report card's detail."""
    cost = summary.get("cost")
    if not cost:
        return "Cost: not known"
    if cost["usd"] is None:
        return f"Cost: not known (the price table has no price for {summary['parameters']['model']})"
    if cost["pricing"] == "batch":
        pricing = f"at batch prices ({100 * cost['share']:g}% of the listed price)"
    else:
        pricing = "at the listed prices"
    batch = summary.get("batch") or {}
    sent = f"; batch {batch['id']}" if batch.get("id") else ""
    return f"Cost: {dollars(cost['usd'])} {pricing}, {dollars(cost['fresh_usd'])} spent now{sent}"


def readable_time(iso: str) -> str:
    """'2026-11-30T14:05:09+00:00' -> '30 November 2026, 14:05 UTC'."""
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    return f"{moment.day} {moment:%B %Y, %H:%M} UTC"


def mark(label_index: int, grade_index: int) -> str:
    """The mark of a (human label, AI grade) cell: same grade, different grade, or pass/fail flip."""
    if label_index == grade_index:
        return AGREE
    same_side = (GRADES[label_index] in PASSING_GRADES) == (GRADES[grade_index] in PASSING_GRADES)
    return DIFFERENT if same_side else FLIPPED


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (channel(v) for v in rgb)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: tuple[float, float, float], second: tuple[float, float, float]) -> float:
    """The WCAG contrast ratio of two colours (1 to 21; body text needs 4.5)."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


Colour = tuple[int, int, int]


def heat_colours(count: int, largest: int, cell_mark: str) -> tuple[Colour, Colour]:
    """(background, text) of a heat-map cell: the more grades, the stronger the tint.

    The text is black or white, whichever contrasts more with the tint: one of the two always
    reaches 4.58:1, above the 4.5:1 body text needs.
    """
    white: Colour = (255, 255, 255)
    black: Colour = (0, 0, 0)
    if not count or not largest:
        return white, (89, 89, 89)  # an empty cell: grey text, 7:1 on white
    strength = 0.15 + 0.85 * count / largest
    red, green, blue = (round(255 + (c - 255) * strength) for c in _TINTS[cell_mark])  # over white
    background = (red, green, blue)
    text = white if contrast(background, white) > contrast(background, black) else black
    return background, text


def heat(count: int, largest: int, cell_mark: str) -> str:
    background, text = heat_colours(count, largest, cell_mark)
    return f"background:rgb{background};color:rgb{text}".replace(" ", "")


def failure_causes(failed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failures grouped by status, most frequent first: the cause in words, how many, and the
    message most of them gave (with how many gave another)."""
    groups: dict[int, list[str]] = {}
    for failure in failed:
        groups.setdefault(failure["status"], []).append(failure["message"])
    causes = []
    for status, messages in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        message, same = Counter(messages).most_common(1)[0]
        causes.append(
            {
                "status": status,
                "cause": CAUSES.get(status, f"the grading failed (HTTP {status})"),
                "count": len(messages),
                "message": message,
                "other_messages": len(messages) - same,
            }
        )
    return causes


def parameter_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, what it is, its value) of each setting of the run, in a teacher's words."""
    parameters, selection = summary["parameters"], summary["selection"]
    responses = parameters["num-responses"]
    evaluated = selection["students"]
    labelled = summary.get("labelled_students", evaluated)  # absent from summaries before it existed
    if selection["sample"] is not None:
        students = (
            f"{evaluated} of the {labelled} labelled students, picked at random "
            f"(seed {selection['seed']}: the same seed picks the same students)"
        )
    elif evaluated == labelled:
        students = f"all {labelled} labelled students"
    else:
        students = f"{evaluated} of the {labelled} labelled students, chosen by name"
    return [
        ("model", "AI model", parameters["model"]),
        (
            "temperature",
            "Temperature",
            f"{parameters['temperature']:g} (how much the AI's answers vary from run to run; 0 the least)",
        ),
        (
            "num-responses",
            "Answers per student",
            "1" if responses == 1 else f"{responses} (each grade is their majority vote)",
        ),
        (
            "remove-comments",
            "Comments removed",
            "yes: comments were taken out of each program before grading"
            if parameters["remove-comments"]
            else "no: programs were graded with their comments",
        ),
        ("examples", "Example programs shown to the AI", f"{summary['examples']} (with their grades)"),
        ("students", "Students", students),
    ]


_MEASURES = {
    "accuracy": ("Exact-match accuracy", percent),
    "pass_fail_accuracy": ("Pass/fail accuracy", percent),
    "kappa": ("Kappa", decimal),
}


def threshold_rows(checks: list[dict[str, Any]]) -> list[dict[str, str | bool]]:
    """Each check of the CI gate in words: what is measured, what it needs, what it got."""
    rows = []
    for check in checks:
        name, _, concept = check["name"].partition("[")
        concept = concept.removesuffix("]")
        value = check["value"]
        if name == "max_failed":
            measure, needs, shown = "Failed assessments", f"at most {check['limit']:g}", f"{value}"
        else:
            measured, as_text = _MEASURES[name.removeprefix("concept_")]
            measure = f"{measured} of {concept}" if concept else f"{measured}, all key concepts"
            needs = f"at least {as_text(check['limit'])}"
            shown = "undefined (nothing graded)" if value is None else as_text(value)
        rows.append({"measure": measure, "needs": needs, "value": shown, "passed": check["passed"]})
    return rows


def render_html(summary: dict[str, Any]) -> str:
    environment = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        percent=percent, decimal=decimal, thousands=thousands, readable_time=readable_time, dollars=dollars
    )
    template = environment.get_template("report.html")
    checks = summary.get("thresholds", {}).get("checks", [])
    return template.render(
        summary=summary,
        short=SHORT_GRADES,
        heat=heat,
        mark=mark,
        marks={"agree": AGREE, "different": DIFFERENT, "flipped": FLIPPED},
        pass_line=PASS_LINE,
        passing=", ".join(SHORT_GRADES[g] for g in GRADES[:PASS_LINE]),
        confidence=confidence,
        levels=LEVELS,
        causes=failure_causes(summary["failed"]),
        parameters=parameter_rows(summary),
        checks=threshold_rows(checks),
        rubric=csv_rows(summary["rubric"]),
    )


class Outputs(NamedTuple):
    summary: Path
    confidence: Path
    report: Path


def write_outputs(summary: dict[str, Any], folder: Path) -> Outputs:
    folder.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(folder / "summary.json", folder / "confidence.json", folder / "report.html")
    outputs.summary.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    outputs.confidence.write_text(
        json.dumps(confidence_by_concept(summary), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    outputs.report.write_text(render_html(summary), encoding="utf-8")
    return outputs

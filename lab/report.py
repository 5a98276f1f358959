"""The HTML report: one self-contained file (inline CSS, no script) drawn from the JSON summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from service.assessment.answers import GRADES
from service.assessment.rubric import csv_rows

_TEMPLATES = Path(__file__).with_name("templates")
# Column and row headings of the confusion matrices: "Extensive", "Convincing", ...
SHORT_GRADES = {grade: grade.removesuffix(" Evidence") for grade in GRADES}


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def decimal(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"  # as rounded in the summary: 0.8, 0.9315


def heat(count: int, largest: int, diagonal: bool) -> str:
    """Inline style of a confusion-matrix cell: the more answers, the stronger the colour.

    Agreement (the diagonal) is green, disagreement red, so a good grader shows a green diagonal.
    """
    if not count or not largest:
        return "background:#fff;color:#999"
    strength = 0.15 + 0.85 * count / largest
    hue = "22,130,60" if diagonal else "200,40,40"
    text = "#fff" if strength > 0.55 else "#111"
    return f"background:rgba({hue},{strength:.2f});color:{text}"


def rubric_table(text: str) -> list[list[str]]:
    return csv_rows(text)


def render_html(summary: dict[str, Any]) -> str:
    environment = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(percent=percent, decimal=decimal)
    template = environment.get_template("report.html")
    return template.render(
        summary=summary,
        short=SHORT_GRADES,
        heat=heat,
        rubric=rubric_table(summary["rubric"]),
    )


def write_outputs(summary: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "summary.json"
    html_path = folder / "report.html"
    json_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(summary), encoding="utf-8")
    return json_path, html_path

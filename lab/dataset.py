"""A labelled dataset on disk, loaded and validated.

Layout (docs/accuracy-lab.md):

    prompt.txt               the grader's system prompt
    rubric.csv               the rubric, as sent to POST /assessment
    labels.csv               `student` column, then one column per key concept holding a grade
    students/<student>.js    one program per labelled student
    examples/<name>.js       optional few-shot examples, each with
    examples/<name>.tsv      the answer the model should give for it
    params.json              optional: model, temperature, num-responses, remove-comments

Every problem raises `DatasetError` with a message that names the file (and row) at fault.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.assessment.fields import MAX_RESPONSES, MAX_TEMPERATURE
from service.assessment.grades import CONVINCING_EVIDENCE, EXTENSIVE_EVIDENCE, GRADES
from service.assessment.rubric import Rubric, RubricError, concept_key, csv_rows, parse_rubric

# GRADES runs from best to worst; that order is the scale of the quadratic-weighted kappa.
PASSING_GRADES = frozenset({EXTENSIVE_EVIDENCE, CONVINCING_EVIDENCE})

# A label may be written in full ("Convincing Evidence") or by its first word ("Convincing").
_GRADE_SPELLINGS = {concept_key(g): g for g in GRADES} | {concept_key(g.split()[0]): g for g in GRADES}

STUDENT_COLUMN = "student"
PARAMS = {
    "model": "a model name",
    "temperature": f"a number from 0 to {MAX_TEMPERATURE:g}",
    "num-responses": f"a whole number from 1 to {MAX_RESPONSES}",
    "remove-comments": "true or false",
}


class DatasetError(ValueError):
    """The dataset folder cannot be used; the message names the file or row at fault."""


@dataclass(frozen=True)
class Dataset:
    root: Path
    prompt: str
    rubric: str  # the CSV text, sent unchanged
    key_concepts: tuple[str, ...]  # rubric order and spelling
    labels: dict[str, dict[str, str]]  # student -> key concept -> canonical grade, labels.csv order
    programs: dict[str, str]  # student -> JavaScript source
    examples: list[tuple[str, str]] = field(default_factory=list)  # (code, answer) pairs
    params: dict[str, Any] = field(default_factory=dict)  # params.json, validated
    unlabelled: tuple[str, ...] = ()  # programs in students/ without a row in labels.csv

    @property
    def name(self) -> str:
        return self.root.resolve().name

    @property
    def students(self) -> list[str]:
        return list(self.labels)


def parse_grade(text: str) -> str | None:
    """The canonical grade `text` names, or None."""
    return _GRADE_SPELLINGS.get(concept_key(text))


def _read_text(path: Path, root: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{_shown(path, root)} is missing.") from None
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"{_shown(path, root)} is not UTF-8 text ({error.reason} at byte {error.start})."
        ) from None
    except IsADirectoryError:
        raise DatasetError(f"{_shown(path, root)} is a folder; a file is expected.") from None


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def load_dataset(folder: str | Path) -> Dataset:
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(
            f"{root} is not a folder; give the dataset folder (it holds prompt.txt, rubric.csv ...)."
        )

    prompt = _read_text(root / "prompt.txt", root)
    if not prompt.strip():
        raise DatasetError("prompt.txt is empty.")

    rubric_text = _read_text(root / "rubric.csv", root)
    try:
        rubric = parse_rubric(rubric_text)
    except RubricError as error:
        raise DatasetError(f"rubric.csv: {error}") from None

    labels = _load_labels(root, rubric)
    programs, unlabelled = _load_programs(root, labels)
    return Dataset(
        root=root,
        prompt=prompt,
        rubric=rubric_text,
        key_concepts=rubric.key_concepts,
        labels=labels,
        programs=programs,
        examples=_load_examples(root),
        params=_load_params(root),
        unlabelled=unlabelled,
    )


def _load_labels(root: Path, rubric: Rubric) -> dict[str, dict[str, str]]:
    key_concepts = rubric.key_concepts
    text = _read_text(root / "labels.csv", root)
    rows = csv_rows(text)
    if not rows:
        raise DatasetError("labels.csv is empty; it needs a header row (student, then each key concept).")
    header = [" ".join(cell.split()) for cell in rows[0]]
    if concept_key(header[0]) != STUDENT_COLUMN:
        raise DatasetError(f"labels.csv: the first column must be '{STUDENT_COLUMN}', not '{header[0]}'.")

    columns: list[str] = []  # the rubric's spelling of each grade column, in labels.csv order
    for name in header[1:]:
        canonical = rubric.canonical(name)
        if canonical is None:
            raise DatasetError(
                f"labels.csv: column '{name}' is not a key concept of rubric.csv ({', '.join(key_concepts)})."
            )
        if canonical in columns:
            raise DatasetError(f"labels.csv: column '{name}' appears twice.")
        columns.append(canonical)
    missing = [k for k in key_concepts if k not in columns]
    if missing:
        raise DatasetError(f"labels.csv has no column for the key concept(s): {', '.join(missing)}.")

    labels: dict[str, dict[str, str]] = {}
    for number, row in enumerate(rows[1:], start=2):
        where = f"labels.csv row {number}"
        student = row[0].strip()
        if not student:
            raise DatasetError(f"{where}: the student column is empty.")
        if "/" in student or "\\" in student or student.startswith("."):
            raise DatasetError(f"{where}: '{student}' cannot name a file in students/.")
        if student in labels:
            raise DatasetError(f"{where}: student '{student}' already has a row.")
        if len(row) != len(header):
            raise DatasetError(
                f"{where} (student '{student}') has {len(row)} cells; the header has {len(header)}."
            )
        grades: dict[str, str] = {}
        for concept, cell in zip(columns, row[1:], strict=True):
            grade = parse_grade(cell)
            if grade is None:
                raise DatasetError(
                    f"{where} (student '{student}'), column '{concept}': '{cell.strip()}' is not a grade; "
                    f"use one of: {', '.join(GRADES)}."
                )
            grades[concept] = grade
        labels[student] = {k: grades[k] for k in key_concepts}
    if not labels:
        raise DatasetError("labels.csv has a header row but no students.")
    return labels


def _load_programs(root: Path, labels: dict[str, dict[str, str]]) -> tuple[dict[str, str], tuple[str, ...]]:
    folder = root / "students"
    if not folder.is_dir():
        raise DatasetError("students/ is missing; it holds one <student>.js file per row of labels.csv.")
    programs = {}
    for student in labels:
        path = folder / f"{student}.js"
        if not path.is_file():
            raise DatasetError(f"labels.csv names student '{student}' but students/{student}.js is missing.")
        programs[student] = _read_text(path, root)
    unlabelled = tuple(sorted(p.stem for p in folder.glob("*.js") if p.stem not in labels))
    return programs, unlabelled


def _load_examples(root: Path) -> list[tuple[str, str]]:
    folder = root / "examples"
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise DatasetError("examples is a file; it must be a folder of <name>.js and <name>.tsv pairs.")
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    for path in files:
        if path.suffix not in (".js", ".tsv"):
            raise DatasetError(f"{_shown(path, root)}: examples/ holds only <name>.js and <name>.tsv files.")
    examples = []
    for code_path in (p for p in files if p.suffix == ".js"):
        answer_path = code_path.with_suffix(".tsv")
        if not answer_path.is_file():
            raise DatasetError(
                f"{_shown(code_path, root)} has no answer: {_shown(answer_path, root)} is missing."
            )
        examples.append((_read_text(code_path, root), _read_text(answer_path, root)))
    for answer_path in (p for p in files if p.suffix == ".tsv"):
        if not answer_path.with_suffix(".js").is_file():
            raise DatasetError(
                f"{_shown(answer_path, root)} has no program: {answer_path.stem}.js is missing."
            )
    return examples


def _load_params(root: Path) -> dict[str, Any]:
    path = root / "params.json"
    if not path.exists():
        return {}
    try:
        params = json.loads(_read_text(path, root))
    except json.JSONDecodeError as error:
        raise DatasetError(f"params.json is not valid JSON: {error}.") from None
    if not isinstance(params, dict):
        raise DatasetError('params.json must hold a JSON object, e.g. {"model": "gpt-4o-mini"}.')
    for name, value in params.items():
        if name not in PARAMS:
            raise DatasetError(f"params.json: unknown parameter '{name}'; use: {', '.join(PARAMS)}.")
        if not _valid_param(name, value):
            raise DatasetError(f"params.json: '{name}' is {json.dumps(value)}; use {PARAMS[name]}.")
    return params


def _valid_param(name: str, value: Any) -> bool:
    if name == "model":
        return isinstance(value, str) and bool(value.strip())
    if name == "remove-comments":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if name == "temperature":
        return math.isfinite(value) and 0 <= value <= MAX_TEMPERATURE
    return float(value).is_integer() and 1 <= value <= MAX_RESPONSES  # num-responses

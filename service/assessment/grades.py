"""Read one model answer into rows, and check the rows against the rubric.

Models answer in many shapes even when told exactly what to write: TSV, CSV, a Markdown table or
JSON, often inside a code fence and between sentences of prose. `parse()` finds the table in any
of these and returns rows with the four columns of docs/assessment.md; `validate()` applies the rules
(exactly the rubric's key concepts, known grades) and returns the rows in rubric order with
canonical spellings. Both raise `AnswerError` whose message is the reason the answer was dropped.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from typing import Any

from service.assessment.rubric import Rubric, concept_key

KEY_CONCEPT, OBSERVATIONS, GRADE, REASON = "Key Concept", "Observations", "Grade", "Reason"
COLUMNS = (KEY_CONCEPT, OBSERVATIONS, GRADE, REASON)

EXTENSIVE_EVIDENCE = "Extensive Evidence"
CONVINCING_EVIDENCE = "Convincing Evidence"
LIMITED_EVIDENCE = "Limited Evidence"
NO_EVIDENCE = "No Evidence"
GRADES = (EXTENSIVE_EVIDENCE, CONVINCING_EVIDENCE, LIMITED_EVIDENCE, NO_EVIDENCE)

# Header spellings models use for each column (compared after `_header_key`).
_HEADER_ALIASES = {
    KEY_CONCEPT: ("key concept", "key concepts", "keyconcept", "concept"),
    OBSERVATIONS: ("observations", "observation"),
    GRADE: ("grade", "label", "evidence level"),
    REASON: ("reason", "reasons", "reasoning", "rationale", "justification"),
}
_COLUMN_BY_ALIAS = {alias: column for column, aliases in _HEADER_ALIASES.items() for alias in aliases}

_FENCE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_MARKDOWN_SEPARATOR = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?$")
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
_QUOTES = ('"', "'")
# Around a key concept, a grade or a header, Markdown emphasis and code marks are noise too.
_WRAPPERS = ("**", "__", "`", *_QUOTES, "*", "_")


class AnswerError(ValueError):
    """An answer cannot be used; the message is the reason, fit for a log line and a 502."""


Row = dict[str, str]


# --- parsing ---------------------------------------------------------------------------------


def parse(text: str) -> list[Row]:
    """The table in `text` as rows keyed by `COLUMNS` (Observations and Reason may be empty)."""
    if not text or not text.strip():
        raise AnswerError("the answer is empty")
    problems: list[str] = []
    for candidate in _candidates(text):
        # Tables with a header row first: a JSON-looking fragment inside a cell must not win.
        for reader in (_markdown_rows, _delimited_rows, _json_rows, _headerless_tsv_rows):
            try:
                rows = reader(candidate)
            except AnswerError as error:
                problems.append(str(error))
                continue
            if rows:
                return rows
    if problems:
        raise AnswerError(problems[0])
    raise AnswerError(
        f"no table with '{KEY_CONCEPT}' and '{GRADE}' columns found in the answer ({_preview(text)})"
    )


def parse_json_answer(text: str) -> list[Row]:
    """The rows of an answer asked for as JSON (`response-type=json`): a JSON array of row objects
    (or an object holding one), a code fence around it allowed, nothing else."""
    if not text or not text.strip():
        raise AnswerError("the answer is empty")
    fenced = next((match.group(2) for match in _FENCE.finditer(text)), None)
    try:
        value = json.loads(fenced if fenced is not None else text)
    except (ValueError, RecursionError):
        raise AnswerError(f"the answer is not valid JSON ({_preview(text)})") from None
    items = _json_items(value)
    if items is None:
        raise AnswerError(f"the JSON answer is not an array of row objects ({_preview(text)})")
    return _rows_of(items)


def _candidates(text: str) -> Iterable[str]:
    """The contents of each code fence first (models put the table there), then the whole text."""
    for match in _FENCE.finditer(text):
        yield match.group(2)
    yield "\n".join(line for line in text.splitlines() if not line.strip().startswith(("```", "~~~")))


def _header_key(cell: str) -> str:
    cell = _unwrap(cell.strip())
    return " ".join(cell.replace("_", " ").replace("-", " ").split()).casefold()


def _header_columns(cells: list[str]) -> list[str | None] | None:
    """Each cell's column, or None when this is not a header (it must name Key Concept and Grade)."""
    columns = [_COLUMN_BY_ALIAS.get(_header_key(cell)) for cell in cells]
    if KEY_CONCEPT in columns and GRADE in columns:
        return columns
    return None


def _unwrap(cell: str, marks: tuple[str, ...] = _WRAPPERS) -> str:
    """Strip white space and wrapping `marks` (quotes, bold...), however deeply nested."""
    cell = cell.strip()
    changed = True
    while changed and cell:
        changed = False
        for mark in marks:
            inner = cell[len(mark) : -len(mark)]
            # `'a' and 'b'` is not wrapped: the mark must not occur inside.
            if (
                len(cell) >= 2 * len(mark)
                and cell.startswith(mark)
                and cell.endswith(mark)
                and mark not in inner
            ):
                cell = inner.strip()
                changed = True
        if cell[:1] == "\u201c" and cell[-1:] == "\u201d" and "\u201c" not in cell[1:-1]:
            cell = cell[1:-1].strip()
            changed = True
    return cell


def _clean(cell: Any, column: str) -> str:
    if cell is None:
        return ""
    text = cell if isinstance(cell, str) else json.dumps(cell) if isinstance(cell, list | dict) else str(cell)
    # Observations and Reason keep `code`, **emphasis** and __proto__; only quotes are stray there.
    text = _unwrap(text, _WRAPPERS if column in (KEY_CONCEPT, GRADE) else _QUOTES)
    # A stray quote left on one side (a TSV cell the model half-quoted).
    if text.count('"') == 1 and (text.startswith('"') or text.endswith('"')):
        text = text.strip('"').strip()
    if column in (KEY_CONCEPT, GRADE):
        text = " ".join(text.split())
    return text


def _row(cells: Iterable[tuple[str | None, Any]]) -> Row:
    row = dict.fromkeys(COLUMNS, "")
    for column, value in cells:
        if column is not None and not row[column]:
            row[column] = _clean(value, column)
    return row


def _json_rows(text: str) -> list[Row] | None:
    value = _first_json_value(text)
    if value is None:
        return None
    items = _json_items(value)
    return None if items is None else _rows_of(items)


def _rows_of(items: list[dict[str, Any]]) -> list[Row]:
    """The rows of JSON row objects; each must name its key concept and grade."""
    rows = []
    for item in items:
        row = _row((_COLUMN_BY_ALIAS.get(_header_key(str(key))), cell) for key, cell in item.items())
        if not row[KEY_CONCEPT] or not row[GRADE]:
            raise AnswerError(f"a JSON item lacks '{KEY_CONCEPT}' or '{GRADE}': {_preview(json.dumps(item))}")
        rows.append(row)
    return rows


def _first_json_value(text: str) -> Any:
    """The first JSON array or object in `text`, prose around it allowed."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):  # nesting too deep for the parser is not JSON we can use
        pass
    decoder = json.JSONDecoder()
    for tries, match in enumerate(re.finditer(r"[\[{]", text)):
        if tries >= 50:
            break
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            continue
        if isinstance(value, list | dict) and value:
            return value
    return None


def _json_items(value: Any) -> list[dict[str, Any]] | None:
    """The list of row objects inside a JSON answer, whichever common shape it has."""
    if isinstance(value, list):
        return value if value and all(isinstance(item, dict) for item in value) else None
    if not isinstance(value, dict):
        return None
    if _header_columns(list(value)) is not None:
        return [value]  # one row on its own
    # {"data": [...]}, {"assessment": [...]}, ...
    for inner in value.values():
        if isinstance(inner, list) and inner and all(isinstance(item, dict) for item in inner):
            return inner
    # {"Variables": {"Grade": ..., ...}, ...}: key concepts as keys.
    if all(isinstance(inner, dict) for inner in value.values()):
        items = []
        for concept, inner in value.items():
            fields = {_COLUMN_BY_ALIAS.get(_header_key(str(k))): v for k, v in inner.items()}
            if GRADE not in fields:
                return None
            items.append({KEY_CONCEPT: concept, **{k: v for k, v in fields.items() if k}})
        return items
    # {"Variables": "Convincing Evidence", ...}: grades only.
    if all(isinstance(inner, str) for inner in value.values()):
        return [{KEY_CONCEPT: concept, GRADE: grade} for concept, grade in value.items()]
    return None


def _markdown_cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [cell.replace("\\|", "|") for cell in _UNESCAPED_PIPE.split(line)]


def _markdown_rows(text: str) -> list[Row] | None:
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if "|" not in line:
            continue
        columns = _header_columns(_markdown_cells(line))
        if columns is None:
            continue
        rows: list[Row] = []
        for body_line in lines[index + 1 :]:
            stripped = body_line.strip()
            if "|" not in stripped:
                if rows or stripped:
                    break
                continue  # a blank line between header and rows
            if _MARKDOWN_SEPARATOR.match(stripped):
                continue
            cells = _repair(_markdown_cells(stripped), columns, joiner="|")
            rows.append(_row(zip(columns, cells, strict=False)))
        return rows
    return None


def _delimited_rows(text: str) -> list[Row] | None:
    """TSV or CSV after a header row; prose before it and after a blank line is ignored."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        delimiter = "\t" if "\t" in line else ","
        header = _split(line, delimiter)
        columns = _header_columns(header)
        if columns is None:
            continue
        body = "\n".join(lines[index + 1 :])
        records = (
            [body_line.split("\t") for body_line in body.splitlines()]
            if delimiter == "\t"
            else csv.reader(io.StringIO(body), skipinitialspace=True)
        )
        try:
            return _table_rows(records, columns, joiner="\t" if delimiter == "\t" else ", ")
        except csv.Error as error:  # e.g. a cell beyond the csv module's size limit
            raise AnswerError(f"the CSV table cannot be read ({error})") from None
    return None


def _table_rows(records: Iterable[list[str]], columns: list[str | None], joiner: str) -> list[Row]:
    rows: list[Row] = []
    for cells in records:
        if not any(cell.strip() for cell in cells):
            if rows:
                break  # a blank line ends the table; what follows is prose
            continue
        if len(cells) < 2 or (len(cells) < len(columns) and rows):
            break  # a line of prose
        rows.append(_row(zip(columns, _repair(cells, columns, joiner=joiner), strict=False)))
    return rows


def _split(line: str, delimiter: str) -> list[str]:
    if delimiter == "\t":
        return line.split("\t")
    try:
        return next(csv.reader([line], skipinitialspace=True), [])
    except csv.Error:
        return line.split(",")


def _repair(cells: list[str], columns: list[str | None], *, joiner: str) -> list[str]:
    """Rejoin a row that has more cells than the header: its text held the delimiter (a comma
    the model did not quote, `||` in a Markdown cell). `joiner` puts the delimiter back.

    Only for the usual column order; the grade cell anchors where Observations end.
    """
    if len(cells) <= len(columns) or columns != [KEY_CONCEPT, OBSERVATIONS, GRADE, REASON]:
        return cells
    grade_at = next((i for i in range(2, len(cells)) if _canonical_grade(_clean(cells[i], GRADE))), None)
    if grade_at is None:
        return cells
    return [
        cells[0],
        joiner.join(cells[1:grade_at]),
        cells[grade_at],
        joiner.join(cells[grade_at + 1 :]),
    ]


def _headerless_tsv_rows(text: str) -> list[Row] | None:
    """Tab-separated rows in the usual column order with no header row: the grade is the 3rd cell."""
    rows = []
    for line in text.splitlines():
        cells = line.split("\t")
        if len(cells) == len(COLUMNS) and _canonical_grade(_clean(cells[2], GRADE)):
            rows.append(_row(zip(COLUMNS, cells, strict=True)))
        elif rows and line.strip():
            break
    return rows or None


def _preview(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 3] + "...")


# --- validation ------------------------------------------------------------------------------


def _canonical_grade(grade: str) -> str | None:
    wanted = concept_key(grade)
    return next((g for g in GRADES if concept_key(g) == wanted), None)


def validate(rows: list[Row], rubric: Rubric) -> list[Row]:
    """`rows` in rubric order with canonical spellings, or AnswerError naming every problem."""
    by_concept: dict[str, Row] = {}
    problems: list[str] = []
    for row in rows:
        concept = rubric.canonical(row[KEY_CONCEPT])
        if concept is None:
            problems.append(f"unexpected key concept {_preview(row[KEY_CONCEPT], 40)}")
            continue
        if concept in by_concept:
            problems.append(f"key concept {concept!r} appears more than once")
            continue
        grade = _canonical_grade(row[GRADE])
        if grade is None:
            problems.append(
                f"grade {_preview(row[GRADE], 40)} of {concept!r} is not one of: {', '.join(GRADES)}"
            )
        by_concept[concept] = {**row, KEY_CONCEPT: concept, GRADE: grade or row[GRADE]}
    missing = [concept for concept in rubric.key_concepts if concept not in by_concept]
    if missing:
        problems.insert(
            0, "missing key concept" + ("s " if len(missing) > 1 else " ") + ", ".join(map(repr, missing))
        )
    if problems:
        raise AnswerError("; ".join(problems))
    return [by_concept[concept] for concept in rubric.key_concepts]

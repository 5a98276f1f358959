"""The rubric: CSV text with a header row whose `Key Concept` column names each concept."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from service.core.errors import quoted

KEY_CONCEPT = "Key Concept"


class RubricError(ValueError):
    """The rubric cannot be used; the message says why."""


def concept_key(text: str) -> str:
    """How key concepts (and grades) are compared: case and surrounding white space ignored."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Rubric:
    text: str  # the CSV as given, sent to the model unchanged
    key_concepts: tuple[str, ...]  # in rubric order, with the rubric's spelling
    _by_key: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One lookup per answer row, whatever the number of concepts: checking an answer is linear.
        object.__setattr__(self, "_by_key", {concept_key(k): k for k in self.key_concepts})

    def canonical(self, name: str) -> str | None:
        """The rubric's spelling of `name`, or None when it is not one of its key concepts."""
        return self._by_key.get(concept_key(name))


def csv_rows(text: str) -> list[list[str]]:
    """The non-blank rows of CSV `text` (a leading byte-order mark ignored); raises csv.Error,
    also for a quoted cell that never ends (strict: it would swallow the rest of the rubric)."""
    # newline="": the csv module handles \r, \r\n and newlines inside quoted cells itself.
    rows = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), strict=True)
    return [row for row in rows if any(cell.strip() for cell in row)]


def parse_rubric(text: str) -> Rubric:
    text = text.lstrip("\ufeff")  # the byte-order mark spreadsheets write: not part of the rubric
    try:
        rows = csv_rows(text)
    except csv.Error as error:
        raise RubricError(f"The rubric is not readable CSV ({error}).") from None
    if not rows:
        raise RubricError("The rubric is empty; send CSV with a header row and one row per key concept.")
    header = [concept_key(cell) for cell in rows[0]]
    if concept_key(KEY_CONCEPT) not in header:
        raise RubricError(
            f"The rubric has no '{KEY_CONCEPT}' column (its header row is {quoted(', '.join(rows[0]))})."
        )
    column = header.index(concept_key(KEY_CONCEPT))
    concepts: list[str] = []
    seen: set[str] = set()
    for number, row in enumerate(rows[1:], start=2):
        name = " ".join(row[column].split()) if column < len(row) else ""
        if not name:
            raise RubricError(f"Rubric row {number} has no key concept.")
        if concept_key(name) in seen:
            raise RubricError(f"The rubric names the key concept {quoted(name)} twice.")
        seen.add(concept_key(name))
        concepts.append(name)
    if not concepts:
        raise RubricError("The rubric has a header row but no key concepts.")
    return Rubric(text=text, key_concepts=tuple(concepts))

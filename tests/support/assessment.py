"""Model answers for assessment tests, written against the sample rubric that ships."""

from __future__ import annotations

from service.assessment.samples import sample

CONCEPTS = ("Variables", "Conditionals", "Functions", "User Input")
RUBRIC = sample().rubric
PROMPT = sample().prompt


def tsv_answer(*grades: str, tag: str = "A", concepts: tuple[str, ...] = CONCEPTS) -> str:
    """A well-formed TSV answer giving `grades` (in rubric order), its text marked with `tag`."""
    lines = ["Key Concept\tObservations\tGrade\tReason"]
    lines += [
        f"{concept}\tobservation {tag}\t{grade}\treason {tag}"
        for concept, grade in zip(concepts, grades, strict=True)
    ]
    return "\n".join(lines) + "\n"

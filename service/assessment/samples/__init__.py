"""The sample that ships with the service: a small JavaScript game, a grading prompt and a
four-concept rubric. `/test/assessment` grades it, so a deployment can be checked end to end."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files


@dataclass(frozen=True)
class Sample:
    code: str
    prompt: str
    rubric: str


@cache
def sample() -> Sample:
    folder = files(__package__)
    return Sample(
        code=folder.joinpath("program.js").read_text(encoding="utf-8"),
        prompt=folder.joinpath("prompt.txt").read_text(encoding="utf-8"),
        rubric=folder.joinpath("rubric.csv").read_text(encoding="utf-8"),
    )

"""Grade every chosen student of a dataset through `grader.assess`, the code path of POST /assessment.

Students are graded in parallel by a thread pool (the work is waiting on the upstream). A failed
assessment (a `ProxyError`: a field the server would refuse, the provider down, no valid answer,
...) is recorded with the status and message the HTTP route would have answered with, and the run
goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lab.dataset import Dataset
from lab.progress import Progress
from service.assessment.grader import assess
from service.assessment.request import read_request
from service.core.errors import ProxyError


@dataclass(frozen=True)
class Parameters:
    model: str
    temperature: float = 0.2
    num_responses: int = 1
    remove_comments: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": self.temperature,
            "num-responses": self.num_responses,
            "remove-comments": self.remove_comments,
        }


@dataclass(frozen=True)
class StudentResult:
    student: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # key concept -> graded row
    agent: str | None = None  # "openai", or "static" for an empty program
    error: dict[str, Any] | None = None  # {"status", "message", "reasons"} when it failed

    @property
    def failed(self) -> bool:
        return self.error is not None


def grade_student(
    dataset: Dataset,
    student: str,
    parameters: Parameters,
    complete: Callable[[dict[str, Any]], dict[str, Any]],
    agent: str,
) -> StudentResult:
    # The fields a client would send; read and checked by the route's own code.
    fields = {
        "code": dataset.programs[student],
        "prompt": dataset.prompt,
        "rubric": dataset.rubric,
        "examples": [list(pair) for pair in dataset.examples],
        "student-id": student,
        **parameters.as_json(),
    }
    try:
        body = assess(read_request(fields, default_model=parameters.model), complete, agent=agent)
    except ProxyError as error:
        reasons = getattr(error, "reasons", [])
        return StudentResult(
            student, error={"status": error.status, "message": error.message, "reasons": reasons}
        )
    metadata = body.get("metadata") or {}
    return StudentResult(
        student,
        rows={row["Key Concept"]: row for row in body["data"]},
        agent=metadata.get("agent"),
    )


def grade_all(
    dataset: Dataset,
    students: Sequence[str],
    parameters: Parameters,
    complete: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    agent: str = "openai",
    workers: int = 4,
    show_progress: bool = True,
) -> list[StudentResult]:
    """Results in the order of `students`, whatever order they finish in."""
    progress = Progress(len(students), enabled=show_progress)
    results: dict[str, StudentResult] = {}

    def run(student: str) -> None:
        result = grade_student(dataset, student, parameters, complete, agent)
        results[student] = result
        progress.advance(failed=result.failed)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="grade")
    try:
        # list(): re-raises the first unexpected exception (a bug) instead of hiding it.
        list(pool.map(run, students))
    except BaseException:
        # Ctrl-C or a bug: start no new student (answers already received stay cached).
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown()
        progress.close()
    return [results[student] for student in students]

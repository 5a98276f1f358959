"""The stand-in provider of `make demo`: the fake OpenAI upstream, taught to grade.

Chats, streams and the other routes get the fake's usual answers. A grading request (a system
message holding the grading prompt, then `Rubric:` and the rubric CSV, as the assessment sends it)
gets one row per key concept of that rubric, with a grade worked out from the student's program
(the last user message) by counting something simple in it: variables that change, `if`
statements, defined functions, input handlers, loops; for a key concept it does not know, the
words of its name. The grades are deterministic and differ from program to program, so an
accuracy report over a dataset has something to measure; they are not a model's judgement.

The rows come as a TSV table (Key Concept, Observations, Grade, Reason), or as a JSON array of
objects with the same fields when the grading prompt asks for JSON or the request sets a JSON
`response_format`. Each of the `n` choices carries the same answer.

    with StandIn(port=0) as provider:           # provider.url ends in /v1
        ...
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from testbed.openai_upstream import FakeOpenAI, Recorded, Reply

RUBRIC_MARK = "\n\nRubric:\n"  # between the prompt and the rubric (service/assessment/messages.py)
KEY_CONCEPT = "Key Concept"
COLUMNS = ("Key Concept", "Observations", "Grade", "Reason")
RULE = "0 is No, 1 Limited, 2 or 3 Convincing, 4 or more Extensive Evidence"

_DECLARATION = re.compile(r"\b(?:var|let|const)\s+([A-Za-z_$][\w$]*)")
_INPUT = re.compile(
    r"""addEventListener\(\s*["'](?:key\w*|mouse\w*|click|dblclick|touch\w*|pointer\w*)["']"""
    r"""|\bon(?:key\w+|mouse\w+|click)\s*="""
    r"""|\b(?:prompt|keyDown|keyWentDown|mouseDown|mouseWentDown|mouseIsOver)\s*\("""
)


class StandIn(FakeOpenAI):
    """A FakeOpenAI that answers grading requests with graded rows."""

    thread_name = "stand-in-provider"

    def __init__(self, *, port: int = 0) -> None:
        super().__init__(port=port, record=False)  # a long demo must not hoard requests
        self.responder = grading_reply


def grading_reply(request: Recorded) -> Reply | None:
    """Graded rows for a grading request; None (the fake's usual answer) for anything else."""
    body = request.body if isinstance(request.body, dict) else {}
    messages = body.get("messages")
    if not request.path.endswith("/chat/completions") or not isinstance(messages, list) or not messages:
        return None
    first = messages[0] if isinstance(messages[0], dict) else {}
    system = _text(first) if first.get("role") in ("system", "developer") else ""
    found = _split_prompt(system)
    if found is None:
        return None
    prompt, concepts = found
    user_turns = [_text(m) for m in messages[1:] if isinstance(m, dict) and m.get("role") == "user"]
    rows = grade(concepts, user_turns[-1] if user_turns else "")
    answer = as_json(rows) if _wants_json(prompt, body) else as_tsv(rows)
    n = body.get("n") if isinstance(body.get("n"), int) and body["n"] > 0 else 1
    return Reply([answer] * n)


# --- reading the request -------------------------------------------------------------------------


def _text(message: object) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _split_prompt(system: str) -> tuple[str, list[str]] | None:
    """(grading prompt, key concepts) of a grading system message, else None."""
    start = system.find(RUBRIC_MARK)
    while start != -1:  # the prompt itself may say "Rubric:"; the rubric is what has the column
        concepts = _key_concepts(system[start + len(RUBRIC_MARK) :])
        if concepts:
            return system[:start], concepts
        start = system.find(RUBRIC_MARK, start + 1)
    return None


def _key_concepts(rubric_csv: str) -> list[str]:
    # Read here rather than with service.assessment.rubric: the stand-in plays a model, which
    # reads the rubric on its own, so a fault of the grader's parser is not mirrored here.
    rows = [row for row in csv.reader(io.StringIO(rubric_csv.strip())) if any(c.strip() for c in row)]
    if not rows:
        return []
    header = [" ".join(cell.split()).casefold() for cell in rows[0]]
    if KEY_CONCEPT.casefold() not in header:
        return []
    column = header.index(KEY_CONCEPT.casefold())
    return [" ".join(row[column].split()) for row in rows[1:] if column < len(row) and row[column].strip()]


def _wants_json(prompt: str, body: dict) -> bool:
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        return True
    return re.search(r"\bJSON\b", prompt) is not None


# --- grading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    what: str  # what was counted, e.g. "if statements"
    lines: list[int]  # where: one line number per item counted


def grade(concepts: list[str], code: str) -> list[dict[str, str]]:
    """One row per key concept, in the rubric's order and spelling."""
    rows = []
    for concept in concepts:
        finding = _finder(concept)(code)
        count = len(finding.lines)
        grade = _grade_for(count)
        where = f" on line{'s' if count > 1 else ''} {_line_list(finding.lines)}" if count else ""
        rows.append(
            {
                "Key Concept": concept,
                "Observations": f"Counted {count} {finding.what}{where}.",
                "Grade": grade,
                "Reason": f"The demo stand-in counts, it does not judge: {RULE}.",
            }
        )
    return rows


def _grade_for(count: int) -> str:
    if count >= 4:
        return "Extensive Evidence"
    return ("No Evidence", "Limited Evidence", "Convincing Evidence", "Convincing Evidence")[count]


def _finder(concept: str) -> Callable[[str], Finding]:
    name = concept.casefold()
    for word, finder in _FINDERS:
        if word in name:
            return finder
    return lambda code: _named(concept, code)


def _matches(pattern: str | re.Pattern, code: str, what: str) -> Finding:
    return Finding(what, [_line_of(code, m.start()) for m in re.finditer(pattern, code)])


def _variables(code: str) -> Finding:
    """One for declaring any variable (a program that only declares gets Limited Evidence, as a
    rubric would say), plus one for each declared variable the program changes later."""
    declared: dict[str, int] = {}  # name -> line of its declaration
    for match in _DECLARATION.finditer(code):
        declared.setdefault(match[1], _line_of(code, match.start()))
    changes = []
    for name, declared_on in declared.items():
        name = re.escape(name)
        change = rf"(?<![\w$.]){name}\s*(?:[-+*/%]?=(?!=)|\+\+|--)|(?:\+\+|--){name}\b"
        # The `=` of the declaration itself is no change.
        lines = [_line_of(code, m.start()) for m in re.finditer(change, code)]
        changes += [line for line in lines if line != declared_on][:1]
    lines = ([min(declared.values())] if declared else []) + changes
    return Finding("variable points (one for declaring any, one per variable changed later)", lines)


def _named(concept: str, code: str) -> Finding:
    words = re.findall(r"[a-z]{3,}", concept.casefold())
    pattern = r"(?i)\b(?:" + "|".join(map(re.escape, words)) + r")" if words else r"(?!)"
    return _matches(pattern, code, f"mentions of '{concept}'")


_FINDERS: list[tuple[str, Callable[[str], Finding]]] = [
    ("variable", _variables),
    ("conditional", lambda code: _matches(r"\bif\s*\(", code, "if statements")),
    ("function", lambda code: _matches(r"\bfunction\s+[A-Za-z_$]|=>", code, "defined functions")),
    ("input", lambda code: _matches(_INPUT, code, "input handlers")),
    ("loop", lambda code: _matches(r"\b(?:for|while)\s*\(|\.forEach\(", code, "loops")),
]


def _line_of(code: str, offset: int) -> int:
    return code.count("\n", 0, offset) + 1


def _line_list(lines: list[int]) -> str:
    return ", ".join(map(str, sorted(set(lines))))


# --- answer formats ------------------------------------------------------------------------------


def as_tsv(rows: list[dict[str, str]]) -> str:
    return "\n".join("\t".join(row) for row in [COLUMNS, *([r[c] for c in COLUMNS] for r in rows)])


def as_json(rows: list[dict[str, str]]) -> str:
    return json.dumps(rows, indent=2)

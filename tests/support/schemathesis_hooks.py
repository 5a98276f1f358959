"""schemathesis's hooks for tests/e2e/test_openapi_conformance.py, loaded by `st` through
tests/e2e/schemathesis.toml.

- What it generates for the OpenAPI document's own string formats (service/edge/openapi/): no JSON
  Schema says "readable CSV whose key concepts are all different", so these strategies write the
  valid values, and the document's patterns and types still decide what is invalid.
- Policy names are the deployment's own (AIPROXY_SAFETY_POLICIES): the document cannot list them,
  so `/v1/safety/check` refusing a `policy` that names none (400 `policy_not_found`) is not a failure.
- The one gap between a pattern and the server it accepts: `student-id` must be printable in
  Python's sense, which also refuses unassigned, private-use and format characters outside ASCII;
  no pattern that ECMA and Python regular expressions both read can list those, so the document
  says it in words and a refusal of such a character is not a failure.
"""

from __future__ import annotations

import csv
import io
import json

import schemathesis
from hypothesis import strategies as st
from schemathesis.openapi.checks import RejectedPositiveData

# Key concepts the fake provider (tests/e2e/test_openapi_conformance.py) can name back in a TSV
# answer: no tabs or line breaks in them.
_CONCEPT = st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,15}[A-Za-z0-9]|[A-Za-z]", fullmatch=True)
# Any other cell: any text (the CSV writer quotes commas, quotes and line breaks).
_CELL = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)
_KEY_CONCEPT = st.sampled_from(["Key Concept", "key concept", " KEY  CONCEPT "])


def concept_key(text: str) -> str:
    return " ".join(text.split()).casefold()


@st.composite
def rubrics(draw: st.DrawFn) -> str:
    concepts = draw(st.lists(_CONCEPT, min_size=1, max_size=5, unique_by=concept_key))
    others = draw(st.lists(_CELL.filter(lambda cell: concept_key(cell) != "key concept"), max_size=3))
    at = draw(st.integers(0, len(others)))
    rows = [[*others[:at], draw(_KEY_CONCEPT), *others[at:]]]
    for concept in concepts:
        cells = draw(st.lists(_CELL, min_size=len(others), max_size=len(others)))
        rows.append([*cells[:at], concept, *cells[at:]])
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()


@st.composite
def examples(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.lists(_CELL, min_size=2, max_size=2), max_size=3))
    if not pairs:
        return draw(st.sampled_from(["", "[]"]))
    return json.dumps(pairs, ensure_ascii=draw(st.booleans()))


schemathesis.openapi.format("rubric-csv", rubrics())
schemathesis.openapi.format("examples-json", examples())


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
        return True
    try:
        refused = response.json()["error"]["param"]
    except (ValueError, KeyError, TypeError):
        return True
    if refused == "policy" and response.json()["error"].get("code") == "policy_not_found":
        return False  # a name no policy of this deployment has
    sent = [part.get("student-id") for part in (case.query, case.body) if isinstance(part, dict)]
    texts = [value for value in sent if isinstance(value, str)]
    return not (
        refused == "student-id" and any(not c.isascii() and not c.isprintable() for v in texts for c in v)
    )

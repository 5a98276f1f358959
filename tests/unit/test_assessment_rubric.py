"""The rubric CSV: key concepts in order, and clear errors for rubrics that cannot be used."""

from __future__ import annotations

import pytest

from service.assessment.rubric import RubricError, parse_rubric
from service.assessment.samples import sample


def test_sample_rubric_has_four_key_concepts_in_order():
    assert parse_rubric(sample().rubric).key_concepts == (
        "Variables",
        "Conditionals",
        "Functions",
        "User Input",
    )


def test_key_concept_column_anywhere_any_case_with_bom_and_blank_lines():
    text = "\ufeffInstructions, key concept ,Extensive Evidence\nlook,Loops,many\n\n,\n"
    text += 'look,"Events, Input",some\n'
    rubric = parse_rubric(text)
    assert rubric.key_concepts == ("Loops", "Events, Input")
    # Sent to the model as given, less the byte-order mark a spreadsheet's CSV export starts with.
    assert rubric.text == text.removeprefix("\ufeff")


def test_canonical_matches_ignoring_case_and_surrounding_white_space():
    rubric = parse_rubric("Key Concept\nUser Input\n")
    assert rubric.canonical("  user input ") == "User Input"
    assert rubric.canonical("User  Input") == "User Input"
    assert rubric.canonical("Input") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("Concept,Description\nLoops,x\n", "no 'Key Concept' column"),
        ("Key Concept,Description\n", "no key concepts"),
        ("Key Concept,Description\nLoops,x\n,y\n", "row 3 has no key concept"),
        ("Key Concept\nLoops\nloops\n", "twice"),
    ],
)
def test_unusable_rubrics_are_explained(text, message):
    with pytest.raises(RubricError, match=message):
        parse_rubric(text)

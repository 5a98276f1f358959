"""Consensus over several valid answers: most frequent grade, ties to the first, sources, Votes."""

from __future__ import annotations

import pytest

from service.assessment.voting import vote

CONCEPTS = ("Variables", "Functions")


def answer(*grades: str, tag: str) -> list[dict[str, str]]:
    return [
        {"Key Concept": concept, "Observations": f"obs {tag}", "Grade": grade, "Reason": f"reason {tag}"}
        for concept, grade in zip(CONCEPTS, grades, strict=True)
    ]


def test_one_answer_passes_through_with_its_vote():
    result = vote([answer("Limited Evidence", "No Evidence", tag="A")])
    assert result == [
        {
            "Key Concept": "Variables",
            "Observations": "obs A",
            "Grade": "Limited Evidence",
            "Reason": "reason A",
            "Votes": ["Limited Evidence"],
        },
        {
            "Key Concept": "Functions",
            "Observations": "obs A",
            "Grade": "No Evidence",
            "Reason": "reason A",
            "Votes": ["No Evidence"],
        },
    ]


def test_majority_wins_and_the_first_answer_with_that_grade_supplies_the_text():
    result = vote(
        [
            answer("Limited Evidence", "No Evidence", tag="A"),
            answer("Convincing Evidence", "No Evidence", tag="B"),
            answer("Convincing Evidence", "Limited Evidence", tag="C"),
        ]
    )
    assert result[0]["Grade"] == "Convincing Evidence"
    assert (result[0]["Observations"], result[0]["Reason"]) == ("obs B", "reason B")
    assert result[0]["Votes"] == ["Limited Evidence", "Convincing Evidence", "Convincing Evidence"]
    assert result[1]["Grade"] == "No Evidence"
    assert (result[1]["Observations"], result[1]["Reason"]) == ("obs A", "reason A")
    assert result[1]["Votes"] == ["No Evidence", "No Evidence", "Limited Evidence"]


def test_a_tie_goes_to_the_grade_that_appeared_first():
    result = vote(
        [
            answer("Limited Evidence", "Extensive Evidence", tag="A"),
            answer("Convincing Evidence", "Convincing Evidence", tag="B"),
            answer("Convincing Evidence", "Convincing Evidence", tag="C"),
            answer("Limited Evidence", "Extensive Evidence", tag="D"),
        ]
    )
    # 2-2 ties: Limited and Extensive came first (answer A).
    assert [row["Grade"] for row in result] == ["Limited Evidence", "Extensive Evidence"]
    assert result[0]["Reason"] == "reason A"


def test_three_way_tie_and_a_majority_against_the_first_answer():
    result = vote(
        [
            answer("No Evidence", "No Evidence", tag="A"),
            answer("Limited Evidence", "Limited Evidence", tag="B"),
            answer("Extensive Evidence", "Limited Evidence", tag="C"),
        ]
    )
    assert result[0]["Grade"] == "No Evidence"  # 1-1-1: the first one
    assert result[1]["Grade"] == "Limited Evidence"  # 2-1: the majority, although A said otherwise
    assert result[1]["Observations"] == "obs B"


def test_each_key_concept_is_voted_on_its_own():
    result = vote(
        [
            answer("No Evidence", "Extensive Evidence", tag="A"),
            answer("Limited Evidence", "Extensive Evidence", tag="B"),
            answer("Limited Evidence", "No Evidence", tag="C"),
        ]
    )
    assert [row["Grade"] for row in result] == ["Limited Evidence", "Extensive Evidence"]
    assert [row["Reason"] for row in result] == ["reason B", "reason A"]


def test_no_answers_is_a_programming_error():
    with pytest.raises(ValueError):
        vote([])

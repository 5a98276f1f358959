"""Parsing model answers of many shapes, and validating them against the rubric.

Each answer below is written the way models really answer: the format asked for, the format they
prefer, prose and fences around the table, and the ways they get it wrong.
"""

from __future__ import annotations

import json

import pytest

from service.assessment.grades import AnswerError, parse, validate
from service.assessment.rubric import parse_rubric

RUBRIC = parse_rubric(
    "Key Concept,Extensive Evidence,Convincing Evidence,Limited Evidence,No Evidence\n"
    "Variables,a,b,c,d\nConditionals,a,b,c,d\nFunctions,a,b,c,d\nUser Input,a,b,c,d\n"
)

EXPECTED = [
    ("Variables", "Convincing Evidence"),
    ("Conditionals", "Extensive Evidence"),
    ("Functions", "Limited Evidence"),
    ("User Input", "No Evidence"),
]


def graded(text: str) -> list[tuple[str, str]]:
    return [(row["Key Concept"], row["Grade"]) for row in validate(parse(text), RUBRIC)]


def rows_of(text: str) -> dict[str, dict[str, str]]:
    return {row["Key Concept"]: row for row in validate(parse(text), RUBRIC)}


TSV = (
    "Key Concept\tObservations\tGrade\tReason\n"
    "Variables\tscore and lives change as the game runs (lines 8-9).\tConvincing Evidence\t"
    "State is tracked.\n"
    "Conditionals\tif/else for catching, missing and game over.\tExtensive Evidence\tSeveral branches.\n"
    "Functions\tOnly update() is defined.\tLimited Evidence\tOne function.\n"
    "User Input\tNo keyboard or mouse handling.\tNo Evidence\tNothing reads input.\n"
)


# --- shapes that parse ---------------------------------------------------------------------------


def test_plain_tsv_as_asked():
    assert graded(TSV) == EXPECTED
    assert rows_of(TSV)["Variables"]["Observations"] == "score and lives change as the game runs (lines 8-9)."
    assert rows_of(TSV)["Functions"]["Reason"] == "One function."


def test_tsv_in_a_fence_with_prose_before_and_after():
    text = (
        f"Here is my assessment of the program:\n\n```tsv\n{TSV}```\n\nLet me know if you need more detail."
    )
    assert graded(text) == EXPECTED


def test_tsv_with_crlf_line_endings_and_trailing_tabs():
    text = TSV.replace("\n", "\t\r\n")
    assert graded(text) == EXPECTED
    assert rows_of(text)["User Input"]["Reason"] == "Nothing reads input."


def test_tsv_with_stray_quotes_odd_case_and_extra_white_space():
    text = (
        "Key Concept\tObservations\tGrade\tReason\n"
        '"Variables"\t"score is updated\t  convincing evidence \tState is tracked."\n'
        "  conditionals  \t'if' and 'else' are used\t\"Extensive Evidence\"\tSeveral branches.\n"
        "FUNCTIONS\tupdate()\tlimited   evidence\tOne.\n"
        "User input\t\tNo Evidence\t\n"
    )
    rows = rows_of(text)
    assert graded(text) == EXPECTED
    assert rows["Variables"]["Observations"] == "score is updated"
    assert rows["Variables"]["Reason"] == "State is tracked."
    assert rows["Conditionals"]["Observations"] == "'if' and 'else' are used"  # inner quotes kept


def test_tsv_with_label_instead_of_grade_and_bold_header():
    text = TSV.replace(
        "Key Concept\tObservations\tGrade\tReason", "**Key Concept**\tObservations\tLabel\tReasoning"
    )
    assert graded(text) == EXPECTED
    assert rows_of(text)["Functions"]["Reason"] == "One function."


def test_tsv_without_a_header_row_in_the_usual_column_order():
    text = "\n".join(TSV.splitlines()[1:])
    assert graded(text) == EXPECTED


def test_csv_with_quoted_commas_and_escaped_quotes():
    text = (
        "Key Concept,Observations,Grade,Reason\n"
        'Variables,"score, lives and stars are updated",Convincing Evidence,"Tracks ""state"", mostly"\n'
        'Conditionals,"if, else if, else",Extensive Evidence,Many branches\n'
        "Functions,update() only,Limited Evidence,One function\n"
        "User Input,none,No Evidence,No input\n"
    )
    rows = rows_of(text)
    assert graded(text) == EXPECTED
    assert rows["Variables"]["Observations"] == "score, lives and stars are updated"
    assert rows["Variables"]["Reason"] == 'Tracks "state", mostly'


def test_csv_with_unquoted_commas_is_repaired_around_the_grade():
    text = (
        "Key Concept,Observations,Grade,Reason\n"
        "Variables,score, lives and stars change,Convincing Evidence,They track state, as required\n"
        "Conditionals,several if statements,Extensive Evidence,Many branches\n"
        "Functions,update,Limited Evidence,One function\n"
        "User Input,none,No Evidence,No input\n"
    )
    rows = rows_of(text)
    assert graded(text) == EXPECTED
    assert rows["Variables"]["Observations"] == "score, lives and stars change"
    assert rows["Variables"]["Reason"] == "They track state, as required"


def test_csv_in_a_fence_with_a_multiline_cell_and_prose_after():
    text = (
        "```csv\n"
        "Key Concept,Observations,Grade,Reason\n"
        'Variables,"Line 8: score\nLine 9: lives",Convincing Evidence,Tracks state\n'
        "Conditionals,if/else,Extensive Evidence,Many\n"
        "Functions,one,Limited Evidence,One\n"
        "User Input,none,No Evidence,None\n"
        "```\n"
        "Overall, a solid start."
    )
    assert graded(text) == EXPECTED
    assert rows_of(text)["Variables"]["Observations"] == "Line 8: score\nLine 9: lives"


def test_csv_followed_by_prose_without_a_blank_line():
    text = (
        "Key Concept,Observations,Grade,Reason\n"
        "Variables,x,Convincing Evidence,y\n"
        "Conditionals,x,Extensive Evidence,y\n"
        "Functions,x,Limited Evidence,y\n"
        "User Input,x,No Evidence,y\n"
        "Overall, the student did well.\n"
    )
    assert graded(text) == EXPECTED


def test_markdown_table_with_alignment_row_and_bold_concepts():
    text = (
        "| Key Concept | Observations | Grade | Reason |\n"
        "|:------------|:-------------|:-----:|-------:|\n"
        "| **Variables** | `score` and `lives` | Convincing Evidence | Tracks state |\n"
        "| **Conditionals** | if / else | **Extensive Evidence** | Many |\n"
        "| **Functions** | one | Limited Evidence | One |\n"
        "| **User Input** | none | No Evidence | None |\n"
    )
    assert graded(text) == EXPECTED
    assert rows_of(text)["Variables"]["Observations"] == "`score` and `lives`"
    assert (
        rows_of(text.replace("`score` and `lives`", "`__proto__`"))["Variables"]["Observations"]
        == "`__proto__`"
    )


def test_markdown_table_between_prose_without_outer_pipes_and_with_an_escaped_pipe():
    text = (
        "Sure! Here is the evaluation.\n\n"
        "Key Concept | Observations | Grade | Reason\n"
        "--- | --- | --- | ---\n"
        "Variables | uses `a \\| b` | Convincing Evidence | ok\n"
        "Conditionals | yes | Extensive Evidence | ok\n"
        "Functions | one | Limited Evidence | ok\n"
        "User Input | no | No Evidence | ok\n\n"
        "I hope this helps. | Not a row"
    )
    assert graded(text) == EXPECTED
    assert rows_of(text)["Variables"]["Observations"] == "uses `a | b`"


def test_markdown_cells_with_unescaped_pipes_from_javascript_code():
    text = (
        "| Key Concept | Observations | Grade | Reason |\n"
        "|---|---|---|---|\n"
        "| Variables | `lives` and `score` | Convincing Evidence | ok |\n"
        "| Conditionals | `if (a || b)` on line 40 | Extensive Evidence | uses `||` and `&&` |\n"
        "| Functions | one | Limited Evidence | ok |\n"
        "| User Input | none | No Evidence | ok |\n"
    )
    assert graded(text) == EXPECTED
    row = rows_of(text)["Conditionals"]
    assert (row["Observations"], row["Reason"]) == ("`if (a || b)` on line 40", "uses `||` and `&&`")


def test_json_array():
    items = [
        {"Key Concept": k, "Observations": f"about {k}", "Grade": g, "Reason": "because"} for k, g in EXPECTED
    ]
    assert graded(json.dumps(items)) == EXPECTED
    assert rows_of(json.dumps(items))["Functions"]["Observations"] == "about Functions"


def test_json_in_a_fence_with_prose_and_snake_case_keys_under_a_wrapper():
    items = [{"key_concept": k, "observations": "seen", "grade": g, "reasoning": "why"} for k, g in EXPECTED]
    text = (
        "Here is the JSON you asked for:\n```json\n"
        + json.dumps({"assessment": items}, indent=2)
        + "\n```\nDone."
    )
    assert graded(text) == EXPECTED
    assert rows_of(text)["Conditionals"]["Reason"] == "why"


def test_json_object_keyed_by_key_concept():
    value = {k: {"Grade": g, "Observations": "o", "Reason": "r"} for k, g in EXPECTED}
    assert graded(json.dumps(value)) == EXPECTED


def test_json_object_of_grades_only_after_prose():
    text = "My grades: " + json.dumps(dict(EXPECTED)) + " (observations omitted)"
    assert graded(text) == EXPECTED
    assert rows_of(text)["Variables"]["Observations"] == ""


def test_json_with_number_and_null_cells():
    items = [{"Key Concept": k, "Observations": None, "Grade": g, "Reason": 3} for k, g in EXPECTED]
    rows = rows_of(json.dumps(items))
    assert rows["Variables"]["Observations"] == ""
    assert rows["Variables"]["Reason"] == "3"


def test_tilde_fence():
    assert graded("~~~\n" + TSV + "~~~\n") == EXPECTED


def test_a_table_cell_holding_a_js_object_does_not_look_like_a_json_answer():
    text = TSV.replace("Only update() is defined.", 'Defines config = {"speed": "fast"} and update().')
    assert graded(text) == EXPECTED


# --- shapes that do not parse ----------------------------------------------------------------------


def test_empty_answer():
    with pytest.raises(AnswerError, match="empty"):
        parse("   \n ")


def test_prose_only_refusal():
    with pytest.raises(AnswerError, match="no table with 'Key Concept' and 'Grade'"):
        parse("I'm sorry, but I can't evaluate this program without more context.")


def test_table_without_a_grade_column():
    with pytest.raises(AnswerError):
        parse("Key Concept\tObservations\nVariables\tscore\nFunctions\tnone\n")


def test_broken_json_in_a_fence():
    text = '```json\n[{"Key Concept": "Variables", "Grade": "No Evidence",}]\n```'
    with pytest.raises(AnswerError):
        parse(text)


def test_json_items_missing_the_grade():
    text = json.dumps([{"Key Concept": "Variables", "Observations": "x"}, {"Key Concept": "Functions"}])
    with pytest.raises(AnswerError, match="lacks"):
        parse(text)


def test_truncated_answer_misses_key_concepts():
    text = "```\n" + "\n".join(TSV.splitlines()[:3]) + "\nFunctions\tOnly upd"  # cut off mid-row
    with pytest.raises(AnswerError, match=r"missing key concepts .*'User Input'"):
        validate(parse(text), RUBRIC)


# --- validation ------------------------------------------------------------------------------------


def test_rows_come_back_in_rubric_order_with_canonical_spellings():
    text = (
        "Key Concept\tObservations\tGrade\tReason\n"
        "user input\tnone\tno evidence\tr\n"
        "FUNCTIONS\tone\tLIMITED EVIDENCE\tr\n"
        "  Variables \tx\tconvincing evidence\tr\n"
        "conditionals\ty\tExtensive evidence\tr\n"
    )
    assert graded(text) == EXPECTED


def test_missing_key_concepts_are_named():
    text = "\n".join(line for line in TSV.splitlines() if not line.startswith(("Functions", "User Input")))
    with pytest.raises(AnswerError, match="missing key concepts 'Functions', 'User Input'"):
        validate(parse(text), RUBRIC)


def test_extra_key_concept_is_named():
    text = TSV + "Loops\tnone\tNo Evidence\tr\n"
    with pytest.raises(AnswerError, match="unexpected key concept 'Loops'"):
        validate(parse(text), RUBRIC)


def test_duplicate_key_concept_is_named():
    text = TSV + "variables\tagain\tNo Evidence\tr\n"
    with pytest.raises(AnswerError, match="'Variables' appears more than once"):
        validate(parse(text), RUBRIC)


def test_unknown_grade_is_named():
    text = TSV.replace("Limited Evidence", "Some Evidence")
    with pytest.raises(AnswerError, match="grade 'Some Evidence' of 'Functions' is not one of"):
        validate(parse(text), RUBRIC)


def test_every_problem_of_an_answer_is_reported_at_once():
    text = (
        "Key Concept\tObservations\tGrade\tReason\n"
        "Variables\tx\tGreat\tr\n"
        "Loops\tx\tNo Evidence\tr\n"
        "Conditionals\tx\tNo Evidence\tr\n"
        "Functions\tx\tNo Evidence\tr\n"
    )
    with pytest.raises(AnswerError) as caught:
        validate(parse(text), RUBRIC)
    message = str(caught.value)
    assert "missing key concept 'User Input'" in message
    assert "unexpected key concept 'Loops'" in message
    assert "grade 'Great' of 'Variables'" in message


def test_json_nested_too_deeply_is_an_unusable_answer_not_a_crash():
    # A student's program can steer what the model writes; this must end as a 502, not a 500.
    with pytest.raises(AnswerError):
        parse("Here is my grading:\n" + "[" * 100_000)

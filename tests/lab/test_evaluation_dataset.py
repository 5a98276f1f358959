"""Loading a labelled dataset: the sample loads, and each kind of mistake is named clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lab.dataset import DatasetError, load_dataset

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "sample"
LABEL_HEADER = "student,Variables,Conditionals,Functions,User Input\n"


@pytest.fixture
def dataset(tmp_path) -> Path:
    folder = tmp_path / "dataset"
    shutil.copytree(SAMPLE, folder)
    return folder


def error_of(folder: Path) -> str:
    with pytest.raises(DatasetError) as caught:
        load_dataset(folder)
    return str(caught.value)


def test_the_sample_dataset_loads_with_its_labels_programs_example_and_parameters():
    sample = load_dataset(SAMPLE)
    assert sample.key_concepts == ("Variables", "Conditionals", "Functions", "User Input")
    assert len(sample.students) == 12 and sample.students[0] == "ada"
    assert set(sample.programs) == set(sample.labels)
    assert sample.labels["jun"] == {
        "Variables": "Convincing Evidence",
        "Conditionals": "No Evidence",
        "Functions": "Limited Evidence",
        "User Input": "Limited Evidence",
    }
    assert len(sample.examples) == 1 and sample.examples[0][1].startswith("Key Concept\t")
    assert sample.params == {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "num-responses": 1,
        "remove-comments": True,
    }
    # Every grade is used somewhere, so the sample exercises the whole scale.
    grades = {grade for row in sample.labels.values() for grade in row.values()}
    assert len(grades) == 4


def test_labels_may_name_grades_by_their_first_word_in_any_case_and_columns_in_any_order(dataset):
    (dataset / "labels.csv").write_text(
        "Student,user input,Functions,Conditionals,Variables\nada, extensive ,CONVINCING,Limited,no\n"
    )
    loaded = load_dataset(dataset)
    assert loaded.labels == {
        "ada": {
            "Variables": "No Evidence",
            "Conditionals": "Limited Evidence",
            "Functions": "Convincing Evidence",
            "User Input": "Extensive Evidence",
        }
    }
    assert list(loaded.labels["ada"]) == [
        "Variables",
        "Conditionals",
        "Functions",
        "User Input",
    ]  # rubric order
    assert "ben" in loaded.unlabelled  # a program without a label is reported, not graded


def test_optional_parts_may_be_absent(dataset):
    shutil.rmtree(dataset / "examples")
    (dataset / "params.json").unlink()
    loaded = load_dataset(dataset)
    assert loaded.examples == [] and loaded.params == {}


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: (d / "prompt.txt").unlink(), "prompt.txt is missing."),
        (lambda d: (d / "prompt.txt").write_text("  \n"), "prompt.txt is empty."),
        (
            lambda d: (d / "rubric.csv").write_text("Concept,Description\nLoops,x\n"),
            "rubric.csv: The rubric has no 'Key Concept' column",
        ),
        (lambda d: (d / "labels.csv").unlink(), "labels.csv is missing."),
        (lambda d: (d / "labels.csv").write_text(""), "labels.csv is empty"),
        (
            lambda d: (d / "labels.csv").write_text("name,Variables\n"),
            "labels.csv: the first column must be 'student', not 'name'",
        ),
        (
            lambda d: (d / "labels.csv").write_text(
                "student,Variables,Loops,Conditionals,Functions,User Input\n"
            ),
            "labels.csv: column 'Loops' is not a key concept of rubric.csv",
        ),
        (
            lambda d: (d / "labels.csv").write_text("student,Variables,Conditionals,Functions\n"),
            "labels.csv has no column for the key concept(s): User Input.",
        ),
        (
            lambda d: (d / "labels.csv").write_text(
                "student,Variables,variables,Conditionals,Functions,User Input\n"
            ),
            "labels.csv: column 'variables' appears twice.",
        ),
        (
            lambda d: (d / "labels.csv").write_text(LABEL_HEADER),
            "labels.csv has a header row but no students.",
        ),
        (
            lambda d: (d / "labels.csv").write_text(LABEL_HEADER + "ada,No,No,No,No\nben,No,Great,No,No\n"),
            "labels.csv row 3 (student 'ben'), column 'Conditionals': 'Great' is not a grade; use one of: "
            "Extensive Evidence, Convincing Evidence, Limited Evidence, No Evidence.",
        ),
        (
            lambda d: (d / "labels.csv").write_text(LABEL_HEADER + "ada,No,No,No\n"),
            "labels.csv row 2 (student 'ada') has 4 cells; the header has 5.",
        ),
        (
            lambda d: (d / "labels.csv").write_text(LABEL_HEADER + "ada,No,No,No,No\nada,No,No,No,No\n"),
            "labels.csv row 3: student 'ada' already has a row.",
        ),
        (
            lambda d: (d / "labels.csv").write_text(LABEL_HEADER + ",No,No,No,No\n"),
            "labels.csv row 2: the student column is empty.",
        ),
        (
            lambda d: (d / "labels.csv").write_text(LABEL_HEADER + "../ada,No,No,No,No\n"),
            "labels.csv row 2: '../ada' cannot name a file in students/.",
        ),
        (
            lambda d: (d / "labels.csv").write_text(LABEL_HEADER + "zoe,No,No,No,No\n"),
            "labels.csv names student 'zoe' but students/zoe.js is missing.",
        ),
        (lambda d: shutil.rmtree(d / "students"), "students/ is missing"),
        (
            lambda d: (d / "students" / "ben.js").write_bytes(b"var x = '\xff';"),
            "students/ben.js is not UTF-8 text",
        ),
        (
            lambda d: (d / "examples" / "sprite.tsv").unlink(),
            "examples/sprite.js has no answer: examples/sprite.tsv is missing.",
        ),
        (
            lambda d: (d / "examples" / "sprite.js").unlink(),
            "examples/sprite.tsv has no program: sprite.js is missing.",
        ),
        (
            lambda d: (d / "examples" / "notes.txt").write_text("x"),
            "examples/notes.txt: examples/ holds only",
        ),
        (lambda d: (d / "params.json").write_text("{model: 1}"), "params.json is not valid JSON"),
        (lambda d: (d / "params.json").write_text("[]"), "params.json must hold a JSON object"),
        (
            lambda d: (d / "params.json").write_text('{"n": 3}'),
            "params.json: unknown parameter 'n'; use: model, temperature",
        ),
        (
            lambda d: (d / "params.json").write_text('{"temperature": 2.5}'),
            "params.json: 'temperature' is 2.5; use a number from 0 to 2.",
        ),
        (
            lambda d: (d / "params.json").write_text('{"num-responses": 1.5}'),
            "'num-responses' is 1.5; use a whole number",
        ),
        (
            lambda d: (d / "params.json").write_text('{"remove-comments": "yes"}'),
            "'remove-comments' is \"yes\"; use true or false",
        ),
        (
            lambda d: (d / "params.json").write_text('{"model": ""}'),
            "params.json: 'model' is \"\"; use a model name.",
        ),
    ],
)
def test_each_mistake_is_named_with_its_file_and_row(dataset, break_it, message):
    break_it(dataset)
    assert message in error_of(dataset)


def test_a_missing_folder_is_named(tmp_path):
    assert f"{tmp_path / 'nowhere'} is not a folder" in error_of(tmp_path / "nowhere")


def test_params_json_accepts_every_documented_parameter(dataset):
    params = {"model": "gpt-4o", "temperature": 0, "num-responses": 5, "remove-comments": False}
    (dataset / "params.json").write_text(json.dumps(params))
    assert load_dataset(dataset).params == params

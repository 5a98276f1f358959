"""The accuracy lab's answer cache keys and its thresholds (the CI gate)."""

from __future__ import annotations

import json

import pytest

from lab.cache import AnswerCache, cache_key
from lab.thresholds import ThresholdsError, check, load_thresholds, validate

BODY = {
    "model": "gpt-4o-mini",
    "temperature": 0.2,
    "n": 1,
    "messages": [{"role": "system", "content": "Grade."}, {"role": "user", "content": "var x = 1;"}],
}
UPSTREAM = "https://api.openai.com/v1"


def changed(**values) -> dict:
    return {**BODY, **values}


def test_the_key_depends_on_everything_sent_and_on_the_upstream():
    key = cache_key(BODY, UPSTREAM)
    assert cache_key(dict(reversed(BODY.items())), UPSTREAM) == key  # field order does not matter
    assert cache_key(BODY, UPSTREAM + "/") == key
    others = [
        cache_key(changed(model="gpt-4o"), UPSTREAM),
        cache_key(changed(temperature=0.3), UPSTREAM),
        cache_key(changed(n=3), UPSTREAM),
        cache_key(
            changed(messages=[*BODY["messages"][:1], {"role": "user", "content": "var x = 2;"}]), UPSTREAM
        ),
        cache_key(changed(messages=[{"role": "system", "content": "Grade!"}, BODY["messages"][1]]), UPSTREAM),
        cache_key(BODY, "http://127.0.0.1:8000/v1"),
    ]
    assert len({key, *others}) == 1 + len(others)


def test_answers_are_kept_as_readable_files_and_a_damaged_one_is_asked_again(tmp_path):
    answers = iter(
        [{"choices": [], "usage": {"total_tokens": 7}}, {"choices": [], "usage": {"total_tokens": 9}}]
    )
    cache = AnswerCache(tmp_path, UPSTREAM)
    complete = cache.wrap(lambda body: next(answers))

    assert complete(BODY)["usage"]["total_tokens"] == 7
    assert complete(BODY)["usage"]["total_tokens"] == 7  # from the file
    stored = json.loads(cache.path(BODY).read_text())
    assert stored == {"request": BODY, "response": {"choices": [], "usage": {"total_tokens": 7}}}
    assert (cache.upstream, cache.cached, cache.usage, cache.fresh_usage) == (
        1,
        1,
        {"total_tokens": 14},
        {"total_tokens": 7},
    )

    cache.path(BODY).write_text('{"request": ')  # e.g. a disk that filled up mid-write
    assert complete(BODY)["usage"]["total_tokens"] == 9
    assert cache.upstream == 2


SUMMARY = {
    "overall": {"accuracy": 0.825, "pass_fail_accuracy": 0.95, "kappa": None},
    "per_concept": {
        "Loops": {"accuracy": 0.7, "pass_fail_accuracy": 0.9},
        "Functions": {"accuracy": 0.9, "pass_fail_accuracy": 1.0},
    },
    "students": {"failed": 2},
}


def test_thresholds_pass_and_fail_on_the_summary_measures():
    checks = check(
        {"accuracy": 0.8, "pass_fail_accuracy": 0.96, "concept_accuracy": 0.75, "max_failed": 2},
        SUMMARY,
    )
    assert [(c.name, c.value, c.passed) for c in checks] == [
        ("accuracy", 0.825, True),
        ("pass_fail_accuracy", 0.95, False),
        ("concept_accuracy[Loops]", 0.7, False),
        ("concept_accuracy[Functions]", 0.9, True),
        ("max_failed", 2, True),
    ]
    assert checks[1].describe() == "FAIL pass_fail_accuracy: 0.95 (needs >= 0.96)"


def test_an_undefined_measure_does_not_reach_a_minimum():
    [kappa] = check({"kappa": -1}, SUMMARY)
    assert not kappa.passed and "undefined" in kappa.describe()


def test_a_thresholds_file_is_validated(tmp_path):
    path = tmp_path / "thresholds.json"
    path.write_text('{"accuracy": 0.8, "max_failed": 0}')
    assert load_thresholds(path) == {"accuracy": 0.8, "max_failed": 0}
    for text, message in [
        ('{"acuracy": 0.8}', "unknown threshold 'acuracy'"),
        ('{"accuracy": 80}', "threshold 'accuracy' is 80; use a number from 0 to 1"),
        ('{"kappa": "high"}', "threshold 'kappa' is \"high\"; use a number from -1 to 1"),
        ('{"max_failed": 1.5}', "'max_failed' must be a whole number"),
        ("[0.8]", "must hold a JSON object"),
        ("{", "is not valid JSON"),
    ]:
        path.write_text(text)
        with pytest.raises(ThresholdsError, match=message.replace("(", r"\(")):
            load_thresholds(path)
    with pytest.raises(ThresholdsError, match="no such thresholds file"):
        load_thresholds(tmp_path / "absent.json")
    with pytest.raises(ThresholdsError, match="flags: threshold 'max_failed' is -1"):
        validate({"max_failed": -1}, "flags")

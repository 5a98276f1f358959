"""The test suite's own layout: one name per test file, and every folder of tests either in a slow
group (tests/conftest.py, which `make check` skips) or among the folders `make check` runs."""

import re
from collections import defaultdict

from tests.conftest import FAST_FOLDERS, GROUPS, TESTS, groups_of

ROOT = TESTS.parent


def test_no_two_test_files_share_a_name():
    places = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        if "node_modules" not in path.parts:
            places[path.name].append(str(path.relative_to(ROOT)))
    shared = {name: sorted(paths) for name, paths in places.items() if len(paths) > 1}
    assert not shared, f"rename these so that each name says what it tests: {shared}"


def test_every_folder_of_tests_is_a_slow_group_or_run_by_make_check():
    folders = {path.relative_to(TESTS).parts[0] for path in TESTS.glob("*/**/test_*.py")}
    slow = {prefix for prefix in GROUPS if "/" not in prefix}
    assert folders - slow - set(FAST_FOLDERS) == set()
    assert not slow & set(FAST_FOLDERS)
    assert all((TESTS / prefix).exists() for prefix in GROUPS)


def test_make_check_runs_the_fast_folders_and_skips_the_slow_groups():
    makefile = (ROOT / "Makefile").read_text()
    expression = re.search(r"^SLOW_GROUPS := (.+)$", makefile, re.MULTILINE)
    assert expression, "Makefile: SLOW_GROUPS not found"
    assert set(expression.group(1).split(" or ")) == {g for groups in GROUPS.values() for g in groups}
    folders = re.search(r"^CHECK_FOLDERS := (.+)$", makefile, re.MULTILINE)
    assert folders, "Makefile: CHECK_FOLDERS not found"
    assert folders.group(1).split() == [f"tests/{folder}" for folder in FAST_FOLDERS]
    assert '-m "not ($(SLOW_GROUPS))" $(CHECK_FOLDERS)' in makefile


def test_a_test_has_the_groups_of_its_folder_and_its_file():
    assert groups_of(TESTS / "unit" / "test_settings.py") == set()
    assert groups_of(TESTS / "e2e" / "test_server_process.py") == {"e2e"}
    assert groups_of(TESTS / "e2e" / "test_node_client.py") == {"e2e", "node"}
    assert groups_of(TESTS / "infra" / "test_store.py") == {"infra"}

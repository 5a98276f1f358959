"""checkov over every synthesized template: exactly the failures infra_cdk/checkov_accepted.json lists."""

from __future__ import annotations

import pytest

from infra_cdk import checkov


@pytest.fixture(scope="module")
def result(template_paths) -> checkov.Scan:
    return checkov.scan(template_paths)


def test_checkov_ran_every_check_on_every_template(result, template_paths):
    assert len(template_paths) == 8
    assert result.passed > 900  # the CloudFormation checks ran (about 1,000 pass)
    assert {failure.stack for failure in result.failures} <= set(template_paths)


def test_no_failure_beyond_the_accepted_list(result):
    new = sorted(result.failures - checkov.accepted().keys())
    assert not new, (
        "checkov finds failures that are not in infra_cdk/checkov_accepted.json: fix them, or add "
        "them there with the reason they are acceptable:\n" + "\n".join(map(str, new))
    )


def test_every_accepted_failure_still_occurs(result):
    stale = sorted(checkov.accepted().keys() - result.failures)
    assert not stale, (
        "These accepted failures no longer occur: remove them from infra_cdk/checkov_accepted.json:\n"
        + "\n".join(map(str, stale))
    )


def test_each_accepted_failure_says_why():
    reasons = checkov.accepted()
    assert reasons
    for failure, reason in reasons.items():
        assert failure.check.startswith("CKV"), failure
        assert len(reason.split()) >= 15, f"{failure}: the reason is too thin: {reason!r}"

"""The naming rules: which environments a pipeline of a branch deploys, and their stack names.

| type, branch            | environments (DNS subdomain = stack name) | pipeline stack       |
|-------------------------|-------------------------------------------|----------------------|
| production, main        | aiproxy-test, aiproxy                     | aiproxy-cicd         |
| production, other B     | aiproxy-test-B, aiproxy-B                 | aiproxy-cicd-B       |
| development, B          | aiproxy-dev-B                             | aiproxy-cicd-dev-B   |

A branch whose name cannot make these names (or would make another branch's) is refused here.
"""

from __future__ import annotations

import re

from infra_cdk.environments.config import ConfigurationError

NAME_PREFIX = "aiproxy"
DEFAULT_BRANCH = "main"
# Environment types of a pipeline (the `environment_type` context value).
PIPELINE_TYPES = ("development", "production")
# A branch name becomes part of a DNS label, so it must be one: lowercase letters, digits and
# inner hyphens. `aiproxy-test-` + branch must fit in the 63 characters of a label.
MAX_BRANCH_LENGTH = 63 - len(f"{NAME_PREFIX}-test-")
_BRANCH_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# Branch names whose stacks would take the name of another branch's or type's stack:
# production branch `test-x` would be `aiproxy-test-x`, the test environment of branch `x`.
RESERVED_BRANCH_WORDS = ("test", "dev", "cicd")


def validate_branch(branch: str) -> str:
    """Return `branch` if stacks and DNS names can be made from it, else raise a clear error."""
    if not branch:
        raise ConfigurationError("branch is empty; pass -c branch=<git branch>")
    if "/" in branch:
        raise ConfigurationError(
            f"branch {branch!r} contains '/', which cannot be part of a DNS name or stack name; "
            "rename the branch (e.g. feature-x instead of feature/x)"
        )
    if len(branch) > MAX_BRANCH_LENGTH:
        raise ConfigurationError(
            f"branch {branch!r} is longer than {MAX_BRANCH_LENGTH} characters, too long for a DNS label"
        )
    if not _BRANCH_PATTERN.match(branch):
        raise ConfigurationError(
            f"branch {branch!r} is not usable in a DNS name; use lowercase letters, digits and "
            "hyphens, starting and ending with a letter or digit"
        )
    first_word = branch.split("-", 1)[0]
    if first_word in RESERVED_BRANCH_WORDS:
        reserved = ", ".join(repr(w) for w in RESERVED_BRANCH_WORDS)
        raise ConfigurationError(
            f"branch {branch!r} would collide with the stacks of another environment "
            f"(e.g. production branch 'test-x' would be named like the test environment of 'x'); "
            f"branch names may not be {reserved} nor start with one of them and a hyphen"
        )
    return branch


def validate_pipeline_type(environment_type: str) -> str:
    if environment_type not in PIPELINE_TYPES:
        raise ConfigurationError(
            f"environment_type {environment_type!r} is not valid; use one of: {', '.join(PIPELINE_TYPES)}"
        )
    return environment_type


def environment_subdomains(environment_type: str, branch: str) -> list[tuple[str, str]]:
    """(environment type, subdomain) of each environment a pipeline deploys, in deployment order."""
    validate_pipeline_type(environment_type)
    validate_branch(branch)
    if environment_type == "development":
        return [("development", f"{NAME_PREFIX}-dev-{branch}")]
    suffix = "" if branch == DEFAULT_BRANCH else f"-{branch}"
    return [("test", f"{NAME_PREFIX}-test{suffix}"), ("production", f"{NAME_PREFIX}{suffix}")]


def pipeline_stack_name(environment_type: str, branch: str) -> str:
    validate_pipeline_type(environment_type)
    validate_branch(branch)
    if environment_type == "development":
        return f"{NAME_PREFIX}-cicd-dev-{branch}"
    return f"{NAME_PREFIX}-cicd" if branch == DEFAULT_BRANCH else f"{NAME_PREFIX}-cicd-{branch}"

"""Reading synthesized CloudFormation templates in the infrastructure tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_cdk.assertions import Template


def only(template: Template, resource_type: str, props: dict | None = None) -> tuple[str, dict]:
    """The logical id and body of the one resource of `resource_type` (with `props`, if given)."""
    found = template.find_resources(resource_type, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))

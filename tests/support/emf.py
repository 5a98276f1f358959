"""Checks of CloudWatch Embedded Metric Format documents: AWS's published schema, then the rules
of the specification that a JSON schema cannot state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = json.loads((Path(__file__).with_name("emf_schema.json")).read_text())
_validator = jsonschema.Draft7Validator(SCHEMA)
MAX_DIMENSION_VALUE = 1024  # CloudWatch's limit on a dimension's value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def assert_valid_emf(document: dict[str, Any]) -> None:
    """Raise AssertionError naming every way `document` breaks the specification."""
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator.iter_errors(document)]
    assert not errors, "not valid against the EMF schema:\n" + "\n".join(errors)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                value = document.get(name)
                assert isinstance(value, str), f"dimension {name} is not a string member: {value!r}"
                assert 0 < len(value) <= MAX_DIMENSION_VALUE and value.isascii() and value.strip(), (
                    f"dimension {name} has an unusable value {value!r}"
                )
        for metric in directive["Metrics"]:
            value = document.get(metric["Name"])
            values = value if isinstance(value, list) else [value]
            assert values and len(values) <= 100 and all(map(_is_number, values)), (
                f"metric {metric['Name']} is not a number (or up to 100 numbers): {value!r}"
            )


def series(document: dict[str, Any]) -> set[tuple[str, tuple[str, ...]]]:
    """Every (metric name, dimension set) the document publishes a value to."""
    found = [
        (metric["Name"], tuple(dimension_set))
        for directive in document["_aws"]["CloudWatchMetrics"]
        for dimension_set in directive["Dimensions"]
        for metric in directive["Metrics"]
    ]
    assert len(found) == len(set(found)), f"a value is published twice to one series: {found}"
    return set(found)

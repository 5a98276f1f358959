"""`GET /openapi.json` describes every route the app serves."""

from __future__ import annotations

import re


def openapi_path(rule: str) -> str:
    """Flask's `/v1/models/<path:model_id>` is OpenAPI's `/v1/models/{model_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_registered_route_and_method_is_described(app, client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        described = paths.get(openapi_path(rule.rule), {})
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method.lower() not in described:
                missing.append(f"{method} {rule.rule}")
    assert missing == []


def test_every_described_route_exists(app, client):
    document = client.get("/openapi.json").get_json()
    served = {openapi_path(rule.rule) for rule in app.url_map.iter_rules()}
    assert sorted(set(document["paths"]) - served) == []


def test_assessment_fields_are_described(client):
    document = client.get("/openapi.json").get_json()
    body = document["paths"]["/assessment"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"code", "prompt", "rubric"}
    assert {
        "examples",
        "model",
        "api-key",
        "remove-comments",
        "num-responses",
        "temperature",
        "student-id",
    } <= set(body["properties"])

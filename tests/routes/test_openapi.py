"""`GET /openapi.json` describes every route the app serves."""

from __future__ import annotations

import re

from service.edge.routes import audio, files, images, safety
from service.edge.routes.openai_api import PATHS


def openapi_path(rule: str) -> str:
    """Flask's `/v1/models/<path:model_id>` is OpenAPI's `/v1/models/{model_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def served_routes(app) -> dict[str, set[str]]:
    """OpenAPI path -> methods, for Flask's routes and the relay routes served outside Flask."""
    served = {"/v1" + path: {"POST"} for path in (*PATHS, *images.PATHS, *audio.PATHS)}
    served[safety.PATH] = {"POST"}
    served[files.PATH] = {"POST"}  # the upload; its other methods are Flask's
    for rule in app.url_map.iter_rules():
        if rule.endpoint != "static":
            served.setdefault(openapi_path(rule.rule), set()).update(rule.methods - {"HEAD", "OPTIONS"})
    return served


def test_every_registered_route_and_method_is_described(app, client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    missing = [
        f"{method} {path}"
        for path, methods in served_routes(app).items()
        for method in sorted(methods)
        if method.lower() not in paths.get(path, {})
    ]
    assert missing == []


def test_every_described_route_exists(app, client):
    document = client.get("/openapi.json").get_json()
    assert sorted(set(document["paths"]) - set(served_routes(app))) == []


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


def test_the_headers_a_relayed_answer_carries_are_described(fake_openai):
    from tests.support.app import make_app

    app = make_app(OPENAI_BASE_URL=fake_openai.url, OPENAI_API_KEY="sk-provider-key-0123456789")
    client = app.test_client()
    answer = client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []})
    assert answer.status_code == 200
    document = client.get("/openapi.json").get_json()
    for path in PATHS:
        operation = document["paths"]["/v1" + path]["post"]
        described = {name.lower() for name in operation["responses"]["200"]["headers"]}
        assert "x-aiproxy-deployment" in described and "model group" in operation["description"]
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["headers"]
    assert {name.lower() for name, _ in answer.headers if name.lower().startswith("x-")} <= {
        name.lower() for name in chat
    }

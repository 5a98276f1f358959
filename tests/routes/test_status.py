"""Status routes and the JSON error shape for everything that goes wrong."""

import pytest

from tests.support.app import make_app


def assert_json_error(response, status, error_type):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["type"] == error_type
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.get_data(as_text=True)
    assert "<html" not in response.get_data(as_text=True).lower()
    return error


def test_health_is_plain_text(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "running" in response.get_data(as_text=True)


def test_test_route_answers_an_empty_object(client):
    response = client.get("/test")
    assert response.status_code == 200
    assert response.get_json() == {}


def test_429_route(client):
    response = client.get("/test/429")
    assert_json_error(response, 429, "rate_limit_error")
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize(("route", "level"), [("/test/error", "ERROR"), ("/test/critical", "CRITICAL")])
def test_log_routes_log_at_their_level(client, caplog, route, level):
    with caplog.at_level("INFO"):
        assert client.get(route).status_code == 200
    assert [r.levelname for r in caplog.records if r.name == "service.edge.routes.status"] == [level]


def test_exception_route_gives_json_500_without_traceback(client, caplog):
    response = client.get("/test/exception")
    error = assert_json_error(response, 500, "server_error")
    assert "DiagnosticException" not in error["message"]
    # The exception itself is logged, with its traceback, for the operator.
    assert "DiagnosticException: Test exception raised on purpose" in caplog.text


def test_unknown_route_is_json_404(client):
    assert_json_error(client.get("/no/such/thing"), 404, "not_found_error")


def test_wrong_method_is_json_405_with_allow(client):
    response = client.post("/test")
    assert_json_error(response, 405, "invalid_request_error")
    assert "GET" in response.headers["Allow"]


def test_body_over_the_limit_is_json_413():
    app = make_app(AIPROXY_MAX_BODY_BYTES="2048")
    # A route that reads its body: any POST route will do once it parses; use the Flask hook.

    @app.post("/echo-length")
    def echo_length():
        from flask import request

        return {"length": len(request.get_data())}

    client = app.test_client()
    assert client.post("/echo-length", data=b"x" * 2048).status_code == 200
    assert_json_error(client.post("/echo-length", data=b"x" * 2049), 413, "invalid_request_error")

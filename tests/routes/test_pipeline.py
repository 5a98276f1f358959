"""The request pipeline in front of every route (`service.edge.pipeline`), seen at the relay routes it
serves outside Flask: the same ids, keys, limits, errors, logs and reports as Flask's routes get."""

from __future__ import annotations

import io
import json
import logging
import socket
import wsgiref.handlers
import wsgiref.util

import pytest
from gunicorn.config import Config as GunicornConfig
from gunicorn.http import wsgi as gunicorn_wsgi
from gunicorn.http.parser import RequestParser
from werkzeug.test import Client

from service.edge.pipeline import RequestPipeline
from service.edge.routes.openai_api import PATHS
from service.governance.auth import ClientGate
from service.governance.key_store import hash_key
from service.ops.metrics import RequestMetrics
from service.ops.observability import configure_logging
from service.server.answer_socket import AnswerSocket
from testbed.honeybadger import HoneybadgerCatcher
from testbed.openai_upstream import Fail, Reply, Stream
from tests.support.app import make_app
from tests.support.sockets import CountingSocket

PROVIDER_KEY = "sk-provider-key-pipeline-0001"
CLIENT_KEY = "aip_pipeline-test-key-00000000000000000000001"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]}


def keyed_app(upstream_url: str, max_concurrent: int = 5, **settings: str):
    store = {"web": {"keys": [hash_key(CLIENT_KEY)], "max_concurrent": max_concurrent}}
    return make_app(
        OPENAI_BASE_URL=upstream_url,
        OPENAI_API_KEY=PROVIDER_KEY,
        AIPROXY_CLIENT_KEYS=json.dumps(store),
        **settings,
    )


def authorised(request_id: str = "req-pipeline") -> dict[str, str]:
    return {"Authorization": f"Bearer {CLIENT_KEY}", "X-Request-Id": request_id}


@pytest.mark.parametrize("path", sorted("/v1" + path for path in PATHS))
def test_a_relay_route_needs_a_client_key_before_anything_else(fake_openai, path):
    client = keyed_app(fake_openai.url).test_client()
    for method in ("post", "get"):
        response = getattr(client, method)(path, json=CHAT)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "invalid_api_key"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert fake_openai.requests == []


@pytest.mark.parametrize("method", ["get", "put", "delete", "head", "options"])
def test_other_methods_at_a_relay_route_are_json_405_naming_post(fake_openai, method):
    client = keyed_app(fake_openai.url).test_client()
    response = getattr(client, method)("/v1/chat/completions", headers=authorised("req-405"))
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.headers["X-Request-Id"] == "req-405"
    if method != "head":
        assert response.get_json()["error"]["type"] == "invalid_request_error"
    assert fake_openai.requests == []


def test_a_relay_body_over_the_limit_is_json_413_and_never_sent(fake_openai):
    client = keyed_app(fake_openai.url, AIPROXY_MAX_BODY_BYTES="2048").test_client()
    body = json.dumps({"model": "text-embedding-3-small", "input": "x" * 1990}).encode()
    assert len(body) <= 2048
    assert client.post("/v1/embeddings", data=body, headers=authorised()).status_code == 200
    too_large = json.dumps({"model": "text-embedding-3-small", "input": "x" * 2100}).encode()
    response = client.post("/v1/embeddings", data=too_large, headers=authorised())
    assert response.status_code == 413
    assert response.get_json()["error"]["message"] == "The request body is too large."
    assert len(fake_openai.requests) == 1


def test_every_line_of_a_relayed_request_names_its_id_and_client(fake_openai):
    app = keyed_app(fake_openai.url)
    logs = io.StringIO()
    configure_logging("INFO", "json", stream=logs)
    client = app.test_client()
    response = client.post("/v1/chat/completions", json=CHAT, headers=authorised("req-lines"), buffered=True)
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "req-lines"
    assert fake_openai.requests[-1].headers["x-request-id"] == "req-lines"
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    mine = [line for line in lines if line["request_id"] == "req-lines"]
    assert {line["logger"] for line in mine} == {"service.usage", "service.access"}
    assert {line["client"] for line in mine} == {"web"}
    [access] = [line for line in mine if line["logger"] == "service.access"]
    assert access["message"] == "POST /v1/chat/completions 200"
    assert access["duration_ms"] >= 0
    [usage] = [line for line in mine if line["logger"] == "service.usage"]
    assert (usage["route"], usage["status"]) == ("/v1/chat/completions", 200)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert CLIENT_KEY not in logs.getvalue() and PROVIDER_KEY not in logs.getvalue()


def test_a_stream_holds_its_clients_slot_until_it_is_closed(fake_openai):
    client = keyed_app(fake_openai.url, max_concurrent=1).test_client()
    fake_openai.enqueue(Stream(contents=["Hel", "lo"]))
    stream = client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=authorised())
    assert stream.status_code == 200
    refused = client.post("/v1/chat/completions", json=CHAT, headers=authorised(), buffered=True)
    assert refused.status_code == 429
    assert "1 requests in flight" in refused.get_json()["error"]["message"]
    assert b"data: [DONE]" in b"".join(stream.response)
    stream.close()
    again = client.post("/v1/chat/completions", json=CHAT, headers=authorised(), buffered=True)
    assert again.status_code == 200


def test_an_exception_in_a_relay_route_is_a_reported_500_that_frees_the_slot(fake_openai, monkeypatch):
    def broken_relay(request):
        raise RuntimeError("raised on purpose in a relay route")

    with HoneybadgerCatcher() as catcher:
        app = keyed_app(
            fake_openai.url,
            max_concurrent=1,
            HONEYBADGER_API_KEY="hbp_pipeline_test_key_0001",
            HONEYBADGER_ENDPOINT=catcher.url,
            HONEYBADGER_FORCE_SYNC="1",
        )
        monkeypatch.setattr(app.runtime.router.default, "relay", broken_relay)
        client = app.test_client()
        for number in range(2):  # the first one's slot is free again for the second
            response = client.post(
                "/v1/chat/completions", json=CHAT, headers=authorised(f"req-boom-{number}"), buffered=True
            )
            assert response.status_code == 500
            assert response.headers["X-Request-Id"] == f"req-boom-{number}"
            assert "reported" in response.get_json()["error"]["message"]
            assert "on purpose" not in response.get_data(as_text=True)
        first, _ = catcher.wait_for(2)
    assert first["error"]["class"] == "RuntimeError"
    context = first["request"]["context"]
    assert (context["request_id"], context["client"]) == ("req-boom-0", "web")
    assert (context["route"], context["method"]) == ("/v1/chat/completions", "POST")
    for secret in (CLIENT_KEY, PROVIDER_KEY):
        assert secret not in catcher.raw()


def test_flask_routes_get_the_same_request_id_and_access_line(fake_openai, caplog):
    client = keyed_app(fake_openai.url).test_client()
    with caplog.at_level(logging.INFO, logger="service.access"):
        response = client.get("/v1/models", headers=authorised("req-flask"), buffered=True)
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "req-flask"
    [access] = [r for r in caplog.records if r.name == "service.access"]
    assert access.getMessage() == "GET /v1/models 200"
    assert (access.request_id, access.client) == ("req-flask", "web")


def test_an_exception_while_checking_the_client_is_a_json_500_not_a_server_page(fake_openai, caplog):
    app = keyed_app(fake_openai.url)

    def store_unreadable():
        raise RuntimeError("the secret store is unreadable")

    app.runtime.keys.current = store_unreadable
    with caplog.at_level(logging.ERROR):
        response = app.test_client().post("/v1/chat/completions", json=CHAT, headers=authorised("req-gate"))
    assert response.status_code == 500
    assert response.headers["X-Request-Id"] == "req-gate"
    assert response.get_json()["error"]["type"] == "server_error"
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.getMessage() == "Exception on /v1/chat/completions [POST]"
    assert logged.request_id == "req-gate"
    assert fake_openai.requests == []


def test_the_slot_is_freed_and_the_access_line_written_even_when_closing_the_answer_fails(
    fake_openai, caplog
):
    app = keyed_app(fake_openai.url, max_concurrent=1)

    class FailsToClose(list):
        def close(self):
            raise OSError("the connection broke while closing")

    def breaks_on_close(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return FailsToClose([b"done"])

    pipeline = RequestPipeline(
        breaks_on_close,
        gate=ClientGate(app.runtime.keys),
        limiter=app.runtime.limiter,
        routes={},
        max_body=1024,
        body_timeout=5,
        output_estimate=0,
        metrics=RequestMetrics(),
    )
    client = Client(pipeline)
    with caplog.at_level(logging.INFO, logger="service.access"):
        for _ in range(2):  # the second is admitted: the first one's slot was freed
            with pytest.raises(OSError):
                client.get("/breaks-on-close", headers=authorised("req-close")).close()
    assert app.runtime.limiter.in_flight("web") == 0
    access = [r.getMessage() for r in caplog.records if r.name == "service.access"]
    assert access == ["GET /breaks-on-close 200"] * 2


def served_by_wsgiref(app_under_pipeline, upstream_url: str, caplog) -> tuple[bytes, str, list[str]]:
    """One GET answered by `app_under_pipeline` behind the pipeline, in the standard library's
    WSGI server (a strict one: it refuses hop-by-hop headers, and a second start_response
    without exc_info); returns what went on the wire, its error output and the access lines."""
    app = keyed_app(upstream_url)
    pipeline = RequestPipeline(
        app_under_pipeline,
        gate=ClientGate(app.runtime.keys),
        limiter=app.runtime.limiter,
        routes={},
        max_body=1024,
        body_timeout=5,
        output_estimate=0,
        metrics=RequestMetrics(),
    )
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/refused",
        "HTTP_AUTHORIZATION": f"Bearer {CLIENT_KEY}",
        "HTTP_X_REQUEST_ID": "req-refused",
    }
    wsgiref.util.setup_testing_defaults(environ)
    wire, errors = io.BytesIO(), io.StringIO()
    with caplog.at_level(logging.INFO):
        wsgiref.handlers.SimpleHandler(io.BytesIO(), wire, errors, environ).run(pipeline)
    access = [r.getMessage() for r in caplog.records if r.name == "service.access"]
    return wire.getvalue(), errors.getvalue(), access


@pytest.mark.parametrize(
    "header",
    [("Connection", "close"), ("Bad Name", "x")],
    ids=["refused-by-the-server", "no-header-name"],
)
def test_headers_the_server_refuses_are_a_json_500_with_its_access_line(fake_openai, caplog, header):
    # Values are escaped (service.core.escaping); what still cannot go out (a header the server will
    # not send, a name that is no HTTP token) gives the JSON error, not "headers already set".
    def sets_a_bad_header(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), header])
        return [b"never sent"]

    wire, errors, access = served_by_wsgiref(sets_a_bad_header, fake_openai.url, caplog)
    head, _, body = wire.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 500 ")
    assert b"X-Request-Id: req-refused" in head
    assert json.loads(body)["error"]["type"] == "server_error"
    assert errors == ""  # the server itself saw no failure
    assert access == ["GET /refused 500"]
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.getMessage() == "Exception on /refused [GET]"


def test_an_upstream_answer_without_a_body_is_relayed_without_one(fake_openai):
    client = keyed_app(fake_openai.url).test_client()
    fake_openai.enqueue(Fail(status=204, raw=b""))
    response = client.post("/v1/moderations", json={"input": "hi"}, headers=authorised())
    assert response.status_code == 204
    assert response.get_data() == b""
    assert "Content-Length" not in response.headers


def written_by_gunicorn(app, body: dict) -> list[bytes]:
    """The writes gunicorn's own answer writer makes to the client's socket (through the worker's
    AnswerSocket) for one POST /v1/chat/completions answered by `app`."""
    raw = json.dumps(body).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n"
        b"Content-Length: " + str(len(raw)).encode() + b"\r\n\r\n" + raw
    )
    cfg = GunicornConfig()
    req = next(RequestParser(cfg, [request], ("127.0.0.1", 1)))
    ours, theirs = socket.socketpair()
    counting = CountingSocket(ours)
    try:
        answer_socket = AnswerSocket(counting)
        response, environ = gunicorn_wsgi.create(
            req, answer_socket, ("127.0.0.1", 1), ("127.0.0.1", 5000), cfg
        )
        answer = app(environ, response.start_response)
        try:
            for item in answer:
                response.write(item)
            response.close()
        finally:
            answer.close()
        answer_socket.flush()
        return counting.writes
    finally:
        counting.close()
        theirs.close()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_answers_head_goes_out_in_one_write_with_its_first_body_bytes(fake_openai, stream):
    app = keyed_app(fake_openai.url)
    fake_openai.enqueue(Stream(contents=["Hel", "lo"]) if stream else Reply(contents=["Hello"]))
    writes = written_by_gunicorn(app, {**CHAT, "stream": stream})
    head, _, first_body = writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert first_body  # not the head alone: one system call and one packet fewer
    wire = b"".join(writes)
    if stream:
        assert first_body.split(b"\r\n", 1)[1].startswith(b"data: {")  # the first event's chunk
        assert wire.endswith(b"0\r\n\r\n") and b"data: [DONE]" in wire
    else:
        assert len(writes) == 1
        assert json.loads(first_body)["choices"][0]["message"]["content"] == "Hello"

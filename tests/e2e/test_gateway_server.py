"""The gateway in the real server process (gunicorn + gevent) against the fake upstream."""

from __future__ import annotations

import http.client
import json
import re
from urllib.parse import urlsplit

import pytest

from testbed.openai_upstream import Stream
from testbed.proxy import proxy_with_fake_openai
from tests.support.waiting import wait_until

KEY = "sk-provider-key-0123456789"


@pytest.fixture(scope="module")
def server_settings():
    return {"OPENAI_API_KEY": KEY, "LOG_FORMAT": "json", "AIPROXY_MAX_BODY_BYTES": "4096"}


def open_stream(server, body: dict) -> http.client.HTTPResponse:
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request(
        "POST",
        "/v1/chat/completions",
        body=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": "Bearer client-key"},
    )
    return connection.getresponse()


def test_first_chunk_reaches_the_client_while_the_upstream_is_still_streaming(server, fake):
    fake.enqueue(Stream(["one", "two", "three", "four"], pause=0.4))
    response = open_stream(server, {"model": "gpt-4o-mini", "messages": [], "stream": True})
    assert response.status == 200
    assert response.getheader("X-Accel-Buffering") == "no"
    first = response.readline()
    # The fake is still answering (three pauses to go): the proxy did not wait for the end.
    assert first.startswith(b"data: {")
    assert fake.active == 1
    rest = response.read()
    assert rest.rstrip().endswith(b"data: [DONE]")
    assert fake.active == 0


def test_a_client_that_disconnects_makes_the_proxy_close_the_upstream_request(server, fake):
    before = len(fake.disconnects)
    fake.enqueue(Stream(["word"] * 100, pause=0.1))
    response = open_stream(server, {"model": "gpt-4o-mini", "messages": [], "stream": True})
    assert response.readline().startswith(b"data: {")
    response.close()  # the client goes away after the first chunk
    assert fake.wait_for_disconnect(count=before + 1, timeout=10)
    assert fake.disconnects[-1].body["stream"] is True


def test_usage_record_is_a_json_log_line(server, fake):
    body = {"model": "gpt-4o-mini", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    response = open_stream(server, {**body})
    response.read()

    def usage_records() -> list[dict]:
        return [r for r in server.log_records() if r["logger"] == "service.usage" and r.get("total_tokens")]

    wait_until(usage_records, timeout=5)
    record = usage_records()[-1]
    assert record["route"] == "/v1/chat/completions"
    assert record["stream"] is True
    assert record["status"] == 200
    assert record["total_tokens"] == record["prompt_tokens"] + record["completion_tokens"]
    assert KEY not in server.log()


def post_chunked(server, path: str, pieces: list[bytes]) -> http.client.HTTPResponse:
    """POST a body in chunked transfer encoding: no Content-Length for the proxy to check first."""
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request(
        "POST",
        path,
        body=iter(pieces),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )
    return connection.getresponse()


def test_a_chunked_body_is_relayed_whole_and_one_over_the_limit_is_413(server, fake):
    empty = json.dumps({"model": "text-embedding-3-small", "input": ""}).encode()
    body = json.dumps({"model": "text-embedding-3-small", "input": "y" * (4096 - len(empty))}).encode()
    assert len(body) == 4096  # AIPROXY_MAX_BODY_BYTES exactly
    response = post_chunked(server, "/v1/embeddings", [body[:1000], body[1000:2000], body[2000:]])
    assert response.status == 200
    assert json.loads(response.read())["object"] == "list"
    assert fake.requests[-1].raw == body
    sent = len(fake.requests)

    too_large = json.dumps({"model": "text-embedding-3-small", "input": "y" * 5000}).encode()
    response = post_chunked(server, "/v1/embeddings", [too_large[:2500], too_large[2500:]])
    assert response.status == 413
    assert json.loads(response.read())["error"]["message"] == "The request body is too large."
    assert len(fake.requests) == sent


def test_a_chunked_body_over_the_limit_is_413_at_flasks_routes_too(server, fake):
    too_large = json.dumps({"model": "gpt-4o-mini", "note": "z" * 5000}).encode()
    response = post_chunked(server, "/test/openai", [too_large[:2500], too_large[2500:]])
    assert response.status == 413
    assert json.loads(response.read())["error"]["message"] == "The request body is too large."


# A line a client would like the log to show, as if the proxy had written it.
FORGED = "1999-01-01 00:00:00,000 ERROR [forged admin] service.access: GET /admin 200"
# Model names no header can carry as they are, how x-aiproxy-deployment names them and how a
# text log line shows them (a snowman is fine in a log line, not in a header).
HOSTILE_MODELS = {
    "gpt-☃": ("openai/gpt-\\u2603", "gpt-☃"),
    "gpt\r": ("openai/gpt\\r", "gpt\\r"),
    "gpt\x00x": ("openai/gpt\\x00x", "gpt\\x00x"),
    "gpt\n" + FORGED: ("openai/gpt\\n" + FORGED, "gpt\\n" + FORGED),
}
TEXT_RECORD = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \[\S+ \S+\] "
)


def request(server, method: str, path: str, body: dict | None, request_id: str) -> http.client.HTTPResponse:
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
    connection.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    return connection.getresponse()


def send_hostile_requests(server) -> int:
    """Each hostile model name, plain and streamed, and a path holding CR LF and a forged line: each
    gets its normal answer and x-aiproxy-deployment encoded. Returns how many requests were sent."""
    for number, (model, (shown, _)) in enumerate(HOSTILE_MODELS.items()):
        for stream in (False, True):
            body = {"model": model, "messages": [], "stream": stream}
            response = request(server, "POST", "/v1/chat/completions", body, f"hostile-{number}-{stream}")
            assert response.status == 200, response.read()
            assert response.getheader("x-aiproxy-deployment") == shown
            assert response.read().strip()
    response = request(server, "GET", "/%0d%0a" + FORGED.replace(" ", "%20"), None, "hostile-path")
    assert response.status == 404
    assert json.loads(response.read())["error"]["type"] == "not_found_error"
    return 2 * len(HOSTILE_MODELS) + 1


def test_hostile_model_names_and_paths_in_text_logs_never_forge_a_line():
    with proxy_with_fake_openai({"OPENAI_API_KEY": KEY, "LOG_FORMAT": "text"}) as (_, server):
        sent = send_hostile_requests(server)

        def access_lines() -> list[str]:
            return [
                line
                for line in server.log().splitlines()
                if re.search(r"\[hostile-\S+ anonymous\] service.access: ", line)
            ]

        wait_until(lambda: len(access_lines()) == sent, timeout=10)
        lines = server.log().splitlines()
    # Every physical line is a whole record of the server's: none starts where a client's line
    # break was, and none is an ERROR.
    records = [TEXT_RECORD.match(line) for line in lines]
    assert [line for line, record in zip(lines, records, strict=True) if not record] == []
    assert [record[1] for record in records if record[1] == "ERROR"] == []
    assert not any(line.startswith("1999-") for line in lines)
    for number, (_, logged) in enumerate(HOSTILE_MODELS.values()):
        for stream in (False, True):
            mine = [line for line in lines if f"[hostile-{number}-{stream} anonymous] " in line]
            assert any("] service.access: POST /v1/chat/completions 200 " in line for line in mine)
            assert any(f"] service.usage: usage /v1/chat/completions {logged} 200 " in line for line in mine)
    assert any("] service.access: GET /\\r\\n" + FORGED + " 404 " in line for line in lines)


def test_hostile_model_names_and_paths_in_json_logs_are_kept_exactly():
    with proxy_with_fake_openai({"OPENAI_API_KEY": KEY, "LOG_FORMAT": "json"}) as (_, server):
        sent = send_hostile_requests(server)

        def access() -> list[dict]:
            return [
                r
                for r in server.log_records()
                if r["logger"] == "service.access" and "hostile" in r["request_id"]
            ]

        wait_until(lambda: len(access()) == sent, timeout=10)
        lines = server.log().splitlines()
    # JSON escapes by nature: every physical line is one object, holding the values exactly.
    records = [json.loads(line) for line in lines]
    assert [r for r in records if r["level"] == "ERROR"] == []
    usage = {r["request_id"]: r for r in records if r["logger"] == "service.usage"}
    for number, model in enumerate(HOSTILE_MODELS):
        for stream in (False, True):
            assert usage[f"hostile-{number}-{stream}"]["model"] == model
            assert usage[f"hostile-{number}-{stream}"]["deployment"] == "openai/" + model
    paths = {r["request_id"]: r["message"] for r in records if r["logger"] == "service.access"}
    assert paths["hostile-path"] == "GET /\r\n" + FORGED + " 404"

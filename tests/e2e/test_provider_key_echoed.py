"""An upstream that echoes the proxy's provider key everywhere it can: in streamed events (one key
split across two TCP writes too, or across two events), in an answer's body and in its headers,
spelled with JSON escapes (`sk\\u002d...`, every character escaped, JSON inside JSON), in the
answers grading and `/test/openai` parse, and in answers that are not valid JSON. Nothing of it
reaches the client of the real server process or its log, in any encoding, and of the upstream's
headers only the allow-list (rate limits, processing time, version, Retry-After, its request id
renamed) is relayed."""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from urllib.parse import urlsplit

import openai
import pytest

from testbed.server import running_server
from tests.support.assessment import PROMPT, RUBRIC
from tests.support.http import fetch
from tests.support.raw_http import RawConnection, RawServer

KEY = "sk-provider-echoed-key-0123456789abcdef"
HALF = len(KEY) // 2
ECHOING_HEADERS = (
    f"openai-organization: org-{KEY}\r\n"
    f"openai-processing-ms: {KEY}\r\n"
    "openai-version: 2020-10-01\r\n"
    f"x-ratelimit-limit-requests: {KEY}\r\n"
    "x-ratelimit-remaining-tokens: 149990\r\n"
    f"x-request-id: req-{KEY}\r\n"
    f"set-cookie: __session={KEY}; Path=/; HttpOnly\r\n"
    f"x-internal: routed-by-{KEY}\r\n"
)
NOT_RELAYED = ("openai-organization", "set-cookie", "x-internal")


def escaped(text: str, upper: bool = False) -> str:
    """`text` as a JSON string literal spells it with every character a \\uXXXX escape."""
    return "".join(f"\\u{ord(char):04X}" if upper else f"\\u{ord(char):04x}" for char in text)


# The key as the text of a JSON string literal can spell it (each decodes to the key), and JSON
# inside a JSON string (a model's JSON answer in `content`) with its backslashes doubled.
SPELLINGS = (
    "sk\\u002d" + KEY[3:],
    "\\u0073k-" + KEY[3:],
    escaped(KEY, upper=True),
    KEY[:10] + escaped(KEY[10:12]) + KEY[12:],
)
NESTED = "sk\\\\u002d" + KEY[3:]


def spelled_out(text: str) -> str:
    """`text` with every escape undone, at any depth (`\\\\u002d` too): what a client may decode."""
    text = re.sub(r"\\+u([0-9a-fA-F]{4})", lambda match: chr(int(match.group(1), 16)), text)
    return re.sub(r"\\+(.)", r"\1", text)


def assert_no_key_in(text: str | bytes) -> None:
    """Neither the key nor either half of it, as written or once every escape is undone."""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    for form in (text, spelled_out(text)):
        assert KEY not in form and KEY[:HALF] not in form and KEY[HALF:] not in form


def assert_no_key_in_answer(body: bytes) -> None:
    assert_no_key_in(body)
    try:
        decoded = json.loads(body)
    except ValueError:
        return
    assert_no_key_in(json.dumps(decoded, ensure_ascii=False))  # what the client's JSON holds


def chat_body(content: str) -> bytes:
    """A chat completion whose content is `content`, a JSON string literal's text as it is."""
    return (
        '{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,'
        '"message":{"role":"assistant","content":"' + content + '"},"finish_reason":"stop"}]}'
    ).encode()


def raw_event(content: str) -> bytes:
    return (
        'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,'
        '"delta":{"content":"' + content + '"},"finish_reason":null}]}\n\n'
    ).encode()


FINISH = (
    b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
)


def grading_answer(reason: str) -> str:
    """A TSV grading answer (JSON string literal text) whose Reason cells are `reason`."""
    rows = ["Key Concept\\tObservations\\tGrade\\tReason"]
    rows += [f"{concept}\\tseen\\tNo Evidence\\t{reason}" for concept in CONCEPTS]
    return "\\n".join(rows)


CONCEPTS = ("Variables", "Conditionals", "Functions", "User Input")
# What the upstream answers when the request holds the marker (in a message, or the model's name).
SCRIPTED = {
    b"answer-escaped": lambda: (200, chat_body(" ".join((*SPELLINGS, NESTED)))),
    b"stream-escaped": lambda: (200, [raw_event(spelling) for spelling in (*SPELLINGS, NESTED)]),
    b"gpt-escaped": lambda: (200, chat_body("Hello " + SPELLINGS[0] + " " + NESTED)),
    b"gpt-invalid-escape": lambda: (200, chat_body(SPELLINGS[0] + " \\q")),
    b"grade-escaped": lambda: (200, chat_body(grading_answer(SPELLINGS[2]))),
    # Valid JSON around a JSON answer that is not (`\q`): the grader quotes it as it drops it.
    b"grade-invalid-escape": lambda: (
        200,
        chat_body('[{\\"Key Concept\\": \\"Variables\\", \\"Grade\\": \\"' + NESTED + ' \\\\q\\"}]'),
    ),
    b"fail-escaped": lambda: (
        400,
        b'{"error":{"message":"Key ' + SPELLINGS[1].encode() + b' is not allowed"}}',
    ),
    b"fail-invalid-escape": lambda: (500, b'{"error":{"message":"Key ' + SPELLINGS[1].encode() + b' \\q"}}'),
}


def scripted(connection: RawConnection, status: int, body: bytes | list[bytes]) -> None:
    if isinstance(body, list):  # a stream, one event a chunk
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        connection.send(head, *(chunk(event) for event in body), chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        return
    reason = b"OK" if status == 200 else b"Failed"
    connection.send(
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (status, reason, len(body))
        + body
    )


def split_stream(connection: RawConnection, writes: str) -> None:
    """The key across three events, the middle one cut inside the key; `writes` says how the
    upstream writes them: each piece on its own ("apart"), all three events in one write
    ("together"), or the first event and the middle's first part in one, the rest in another
    ("overlapping")."""
    connection.send(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    first, middle, last = raw_event("Your key is " + KEY[:5]), raw_event(KEY[5:20]), raw_event(KEY[20:] + ".")
    cut = middle.index(KEY[5:20].encode()) + 7
    pieces = {
        "apart": (chunk(first), chunk(middle[:cut]), chunk(middle[cut:]), chunk(last)),
        "together": (chunk(first) + chunk(middle) + chunk(last),),
        "overlapping": (chunk(first) + chunk(middle[:cut]), chunk(middle[cut:]) + chunk(last)),
    }[writes]
    connection.send(*pieces, pause=0.2)
    connection.send(chunk(FINISH) + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def event(content: str) -> bytes:
    delta = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return b"data: " + json.dumps(delta).encode() + b"\n\n"


def echo(connection: RawConnection) -> None:
    """Answer each request on the connection, echoing the key it brought."""
    while request := connection.read_request():
        assert f"Authorization: Bearer {KEY}".encode() in request
        marker = next((marker for marker in SCRIPTED if marker in request), None)
        if marker is not None:
            scripted(connection, *SCRIPTED[marker]())
        elif split := re.search(rb"stream-split-(\w+)", request):
            split_stream(connection, split.group(1).decode())
        elif b'"stream": true' in request or b'"stream":true' in request:
            connection.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                + ECHOING_HEADERS.encode()
                + b"\r\n"
            )
            whole = event(f"whole {KEY}.")
            split = event(f"split {KEY}.")
            cut = split.index(KEY.encode()) + HALF
            # Two TCP writes, 0.2 s apart, in two chunks of the chunked body: the key's halves
            # arrive separately.
            connection.send(chunk(whole), chunk(split[:cut]), chunk(split[cut:]), pause=0.2)
            connection.send(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        else:
            status = b"400 Bad Request" if b"fail" in request else b"200 OK"
            body = json.dumps({"object": "chat.completion", "echo": f"you sent {KEY}", "choices": []})
            if b"fail" in request:
                body = json.dumps({"error": {"message": f"Key {KEY} is not allowed", "type": "x"}})
            connection.send(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n".encode()
                + ECHOING_HEADERS.encode()
                + b"\r\n"
                + body.encode()
            )


@pytest.fixture(scope="module")
def server():
    with (
        RawServer(echo) as upstream,
        running_server({"OPENAI_BASE_URL": upstream.url + "/v1", "OPENAI_API_KEY": KEY}) as server,
    ):
        yield server
        assert upstream.errors == []


def post(server, body: dict) -> tuple[http.client.HTTPResponse, bytes]:
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response, response.read()


def assert_key_nowhere(response: http.client.HTTPResponse, body: bytes) -> None:
    assert KEY[:HALF] not in body.decode() and KEY[HALF:] not in body.decode()
    for name, value in response.getheaders():
        assert KEY[:HALF] not in value and KEY[HALF:] not in value, name
    names = {name.lower() for name, _ in response.getheaders()}
    assert names.isdisjoint(NOT_RELAYED)
    # The allow-listed headers are relayed, the key blanked out of them.
    assert response.getheader("openai-processing-ms") == "[FILTERED]"
    assert response.getheader("x-ratelimit-limit-requests") == "[FILTERED]"
    assert response.getheader("x-ratelimit-remaining-tokens") == "149990"
    assert response.getheader("openai-version") == "2020-10-01"
    assert response.getheader("X-Upstream-Request-Id") == "req-[FILTERED]"
    assert not response.getheader("X-Request-Id").startswith("req-")  # the proxy's own


def test_a_stream_that_echoes_the_key_even_split_across_writes_never_shows_it(server):
    response, body = post(server, {"model": "gpt-4o-mini", "messages": [], "stream": True})
    assert response.status == 200
    assert_key_nowhere(response, body)
    events = [json.loads(e.removeprefix(b"data: ")) for e in body.split(b"\n\n")[:-2]]
    contents = [e["choices"][0]["delta"]["content"] for e in events]
    assert contents == ["whole [FILTERED].", "split [FILTERED]."]
    assert body.endswith(b"data: [DONE]\n\n")
    assert KEY not in server.log()


def test_an_answer_that_echoes_the_key_never_shows_it(server):
    response, body = post(server, {"model": "gpt-4o-mini", "messages": []})
    assert response.status == 200
    assert_key_nowhere(response, body)
    assert json.loads(body)["echo"] == "you sent [FILTERED]"


def test_an_error_that_echoes_the_key_never_shows_it(server):
    response, body = post(server, {"model": "gpt-4o-mini", "messages": [], "fail": True})
    assert response.status == 400
    assert_key_nowhere(response, body)
    assert json.loads(body)["error"]["message"] == "Key [FILTERED] is not allowed"
    assert KEY not in server.log()


def test_an_answer_spelling_the_key_with_escapes_never_shows_it(server):
    response, body = post(
        server, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "answer-escaped"}]}
    )
    assert response.status == 200
    assert_no_key_in_answer(body)
    content = json.loads(body)["choices"][0]["message"]["content"]
    assert content == " ".join(["[FILTERED]"] * 5)
    assert_no_key_in(server.log())


def test_a_stream_spelling_the_key_with_escapes_never_shows_it(server):
    response, body = post(
        server,
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "stream-escaped"}]},
    )
    assert response.status == 200
    assert_no_key_in_answer(body)
    events = [json.loads(e.removeprefix(b"data: ")) for e in body.split(b"\n\n")[:-2]]
    assert [e["choices"][0]["delta"]["content"] for e in events] == ["[FILTERED]"] * 5
    assert_no_key_in(server.log())


@pytest.mark.parametrize("writes", ["apart", "together", "overlapping"])
def test_the_key_split_across_events_and_reads_never_reaches_the_joined_content(server, writes):
    # The relay handles the whole events of one upstream read together: the key's pieces may come
    # in one read, in several, or straddle them.
    content = f"stream-split-{writes}"
    with openai.OpenAI(base_url=server.url + "/v1", api_key="client-key", max_retries=0, timeout=20) as sdk:
        stream = sdk.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": content}]
        )
        joined = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert joined == "Your key is [FILTERED]."
    assert_no_key_in(joined)
    assert_no_key_in(server.log())


def grade(server, code: str, **fields: str) -> tuple[int, bytes]:
    form = {"code": code, "prompt": PROMPT, "rubric": RUBRIC, "num-responses": "1", **fields}
    response = fetch(server.url + "/assessment", urllib.parse.urlencode(form).encode(), timeout=15)
    return response.status, response.body


def test_grading_an_answer_that_spells_the_key_with_escapes_never_shows_it(server):
    status, body = grade(server, "print('grade-escaped')")
    assert status == 200
    assert_no_key_in_answer(body)
    assert {row["Reason"] for row in json.loads(body)["data"]} == {"[FILTERED]"}
    assert_no_key_in(server.log())


def test_a_json_grading_answer_that_is_invalid_and_holds_the_key_is_quoted_without_it(server):
    status, body = grade(server, "print('grade-invalid-escape')", **{"response-type": "json"})
    assert status == 502
    assert_no_key_in_answer(body)
    assert "[FILTERED]" in json.loads(body)["error"]["message"]  # the answer is quoted, key blanked
    assert "Dropped an invalid model answer" in server.log()
    assert_no_key_in(server.log())


@pytest.mark.parametrize(("model", "status"), [("gpt-escaped", 200), ("gpt-invalid-escape", 502)])
def test_test_openai_never_shows_the_key_in_any_spelling(server, model, status):
    response = fetch(server.url + "/test/openai?model=" + model, timeout=15)
    assert response.status == status
    assert_no_key_in_answer(response.body)
    if status == 200:
        assert json.loads(response.body)["content"] == "Hello [FILTERED] [FILTERED]"
    assert_no_key_in(server.log())


@pytest.mark.parametrize("marker", ["fail-escaped", "fail-invalid-escape"])
def test_an_error_spelling_the_key_with_escapes_never_shows_it(server, marker):
    response, body = post(server, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": marker}]})
    assert response.status in (400, 500)
    assert_no_key_in_answer(body)
    assert_no_key_in(server.log())

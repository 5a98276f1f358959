"""Log formats, levels, and the request id on every line of a request."""

import io
import json
import logging
import os
import sys
from datetime import UTC, datetime

import pytest

from service.core.request_state import new_id
from service.ops.logformat import CONTINUATION, JsonFormatter, TextFormatter, time_text
from service.ops.observability import configure_logging
from tests.support.app import make_app


@pytest.fixture
def captured():
    """The app's log output, as configured by create_app, in a buffer."""
    buffers = []

    def build(**settings):
        app = make_app(**settings)
        buffer = io.StringIO()
        configure_logging(app.runtime.settings.log_level, settings.get("LOG_FORMAT", "text"), buffer)
        buffers.append(buffer)
        return app, buffer

    yield build
    configure_logging("INFO", "text")


def test_json_lines_carry_the_request_id_and_client(captured):
    app, buffer = captured(LOG_FORMAT="json")
    response = app.test_client().get("/test/error", headers={"X-Request-Id": "req-42"}, buffered=True)
    assert response.headers["X-Request-Id"] == "req-42"
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    mine = [line for line in lines if line["request_id"] == "req-42"]
    assert [line["logger"] for line in mine] == ["service.edge.routes.status", "service.access"]
    error, access = mine
    assert error["level"] == "ERROR"
    assert error["client"] == "anonymous"
    assert access["message"] == "GET /test/error 200"
    assert isinstance(access["duration_ms"], float)
    assert {"time", "level", "logger", "message", "request_id", "client"} <= set(access)


def test_text_lines_carry_the_request_id(captured):
    app, buffer = captured(LOG_FORMAT="text")
    app.test_client().get("/test/critical", headers={"X-Request-Id": "abc-1"}, buffered=True)
    lines = buffer.getvalue().splitlines()
    assert any(
        "CRITICAL [abc-1 anonymous] service.edge.routes.status: Test critical" in line for line in lines
    )
    assert any(
        "[abc-1 anonymous] service.access: GET /test/critical 200 duration_ms=" in line for line in lines
    )


def test_the_access_line_is_written_once_the_answer_has_gone_out(captured):
    # The server closes an answer after sending it; until then the client is not kept waiting
    # for the proxy's own log line.
    app, buffer = captured(LOG_FORMAT="json")
    response = app.test_client().get("/test", headers={"X-Request-Id": "req-late"})
    assert response.status_code == 200
    assert "req-late" not in buffer.getvalue()
    response.close()
    (access,) = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert access["message"] == "GET /test 200"
    assert (access["request_id"], access["client"]) == ("req-late", "anonymous")


def test_request_id_is_generated_when_absent_or_unsafe(client):
    generated = client.get("/").headers["X-Request-Id"]
    assert len(generated) == 32
    assert client.get("/").headers["X-Request-Id"] != generated
    forged = client.get("/", headers={"X-Request-Id": "x ERROR fake log line"}).headers["X-Request-Id"]
    assert " " not in forged and "fake" not in forged
    assert client.get("/", headers={"X-Request-Id": "a" * 129}).headers["X-Request-Id"] != "a" * 129


def test_generated_ids_differ_between_forked_workers():
    # Workers are forked from one master: each must draw its own ids, not repeat its siblings'.
    firsts = []
    for _ in range(2):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.write(write_end, new_id().encode())
            os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        with os.fdopen(read_end) as pipe:
            firsts.append(pipe.read())
    mine = new_id()
    assert all(len(first) == 32 and int(first, 16) >= 0 for first in firsts)
    assert len({*firsts, mine}) == 3


def test_a_key_sent_as_request_id_is_not_echoed_or_logged(client):
    for key in ("aip_Zm9vYmFyYmF6cXV4", "sk-proj-abcdef123456"):
        assert client.get("/", headers={"X-Request-Id": key}).headers["X-Request-Id"] != key


def test_errors_also_carry_the_request_id(client):
    response = client.get("/nowhere", headers={"X-Request-Id": "lost-1"})
    assert response.status_code == 404
    assert response.headers["X-Request-Id"] == "lost-1"


def test_log_level_is_honoured(captured):
    app, buffer = captured(LOG_LEVEL="WARNING")
    app.test_client().get("/test/error")
    text = buffer.getvalue()
    assert "Test error logged" in text
    assert "service.access" not in text  # INFO lines are below WARNING
    assert logging.getLogger().level == logging.WARNING


# A record a client would like the log to show, as if the proxy had written it.
FORGED = "1999-01-01 00:00:00,000 ERROR [forged admin] service.access: GET /admin 200"


def record(message: str, *args: object, **fields: object) -> logging.LogRecord:
    made = logging.LogRecord("service.test", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(fields)
    return made


def test_a_line_break_or_control_character_in_a_text_field_never_starts_a_line():
    hostile = "gpt\r\n" + FORGED + "\x00\x1b[2J\u2028end"
    line = TextFormatter().format(
        record("model %s refused", hostile, request_id="a\nb", client="web\r\n" + FORGED, model=hostile)
    )
    assert line.endswith(
        f" WARNING [a\\nb web\\r\\n{FORGED}] service.test: model gpt\\r\\n{FORGED}\\x00\\x1b[2J\\u2028end"
        f" refused model={json.dumps(hostile)}"
    )
    assert line.splitlines() == [line]


def test_a_traceback_in_the_text_format_is_on_marked_lines_that_never_start_a_record():
    try:
        raise ValueError("bad model\n" + FORGED)
    except ValueError:
        failure = record("Exception on /v1/%s [POST]", "x\n" + FORGED, exc_info=sys.exc_info())
    lines = TextFormatter().format(failure).splitlines()
    assert lines[0].endswith(" WARNING [- -] service.test: Exception on /v1/x\\n" + FORGED + " [POST]")
    assert lines[1] == CONTINUATION + "Traceback (most recent call last):"
    # The exception's own line break starts a marked line too.
    assert lines[-2:] == [CONTINUATION + "ValueError: bad model", CONTINUATION + FORGED]
    assert all(line.startswith(CONTINUATION) for line in lines[1:])


def test_json_lines_hold_line_breaks_and_control_characters_exactly():
    hostile = "gpt\r\n" + FORGED + "\x00\u2028☃"
    line = JsonFormatter().format(record("model %s", hostile, model=hostile))
    assert line.splitlines() == [line]
    assert (json.loads(line)["message"], json.loads(line)["model"]) == ("model " + hostile, hostile)


def test_a_path_with_a_line_break_is_one_access_line(captured):
    app, buffer = captured(LOG_FORMAT="text")
    forged_path = "/%0d%0a" + FORGED.replace(" ", "%20")
    app.test_client().get(forged_path, headers={"X-Request-Id": "inj-1"}, buffered=True)
    [line] = buffer.getvalue().splitlines()
    assert f" INFO [inj-1 anonymous] service.access: GET /\\r\\n{FORGED} 404 duration_ms=" in line


def test_a_json_line_is_written_whatever_its_fields_hold():
    # orjson writes the lines; what it refuses (an integer beyond 64 bits, a non-string key, a lone
    # surrogate from a client's JSON escape) is still written, the same fields in the same order.
    record = logging.LogRecord("service.test", logging.INFO, __file__, 1, "odd fields", (), None)
    record.huge = 2**70
    record.keyed = {1: "one"}
    record.surrogate = "model \ud800"
    record.plain = "é"
    line = JsonFormatter().format(record)
    document = json.loads(line)
    assert "\n" not in line
    assert (document["huge"], document["keyed"]) == (2**70, {"1": "one"})
    assert (document["surrogate"], document["plain"]) == ("model \ud800", "é")
    assert list(document)[-4:] == ["huge", "keyed", "surrogate", "plain"]


@pytest.mark.parametrize(
    "created",
    [
        1796539637.0,
        1796539637.0009995,
        1796539637.9995,
        1796539637.9999996,
        1796539637.5,
        0.0,
        1796543999.99999,
    ],
)
def test_a_lines_time_is_what_datetime_writes_to_the_millisecond(created):
    # The second's text is kept from line to line; the milliseconds round as datetime's do.
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert time_text(created) == expected
    assert time_text(created + 1) == datetime.fromtimestamp(created + 1, UTC).isoformat(
        timespec="milliseconds"
    )
    assert time_text(created) == expected  # back to an earlier second

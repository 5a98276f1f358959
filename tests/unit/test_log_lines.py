"""service.ops.lines: a request's access line and usage records are written straight to the JSON
stream when nothing else listens, and are then the very lines `logging` would have written."""

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from service.core import request_state
from service.core.request_state import RequestState
from service.ops import lines
from service.ops.metrics import emf_metadata
from service.ops.observability import configure_logging

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {
    "request_id": "from-the-fields",
    "client": "web",
    "model": "gpt-4o-mini",
    "prompt_tokens": 3,
    "snowman": "☃ \u2028",
    "_hidden": "never shown",
}


@pytest.fixture
def stream(monkeypatch):
    """The service's JSON logging into a buffer, alone on the root logger once `alone()` is called
    in the test (pytest adds its capture handler when the test starts)."""
    buffer = io.StringIO()
    handler = configure_logging("INFO", "json", buffer)
    buffer.alone = lambda *others: monkeypatch.setattr(logging.getLogger(), "handlers", [handler, *others])
    buffer.handler = handler
    outside = request_state.begin(None)  # no request's state left over by an earlier test
    yield buffer
    request_state.end(outside)
    configure_logging("INFO", "text")


@pytest.fixture
def made_records():
    """The LogRecords made: none, when a line is written straight to the stream."""
    made = []
    factory = logging.getLogRecordFactory()

    def counting(*args, **kwargs):
        made.append(args[0])
        return factory(*args, **kwargs)

    logging.setLogRecordFactory(counting)
    yield made
    logging.setLogRecordFactory(factory)


def without_time(text: str) -> list[dict]:
    documents = [json.loads(line) for line in text.splitlines()]
    for document in documents:
        document.pop("time")
    return documents


def test_a_line_written_straight_is_the_line_logging_writes(stream, made_records):
    logger = logging.getLogger("service.usage")
    stream.alone()
    state = RequestState("req-7", "POST", "/v1/chat/completions", client="school-app")
    token = request_state.begin(state)
    try:
        lines.write(logger, "usage %s %s", ("/v1/chat/completions", 200), dict(FIELDS))
        assert made_records == []  # no LogRecord: straight to the stream
        logger.info("usage %s %s", "/v1/chat/completions", 200, extra=dict(FIELDS))
    finally:
        request_state.end(token)
    straight, _ = stream.getvalue().splitlines()
    assert "\u2028" not in straight and "☃" in straight  # one line, UTF-8
    [first, second] = without_time(stream.getvalue())
    assert first == second
    assert list(first)[:6] == ["level", "logger", "message", "request_id", "client", "model"]
    assert (first["request_id"], first["client"], first["message"]) == (
        "req-7",
        "school-app",
        "usage /v1/chat/completions 200",
    )
    assert "_hidden" not in first


def test_outside_a_request_the_fields_name_it_and_emf_metadata_is_written_as_it_is(stream):
    stream.alone()
    logger = logging.getLogger("service.access")
    figures = {"Environment": "test", "Client": "web", "Route": "/x", "StatusClass": "2xx", "Requests": 1}
    fields = {**FIELDS, "_aws": emf_metadata(figures), **figures}
    lines.write(logger, "GET /x 200", (), fields)
    logger.info("GET /x 200", extra=fields)
    first, second = without_time(stream.getvalue())
    assert first["_aws"].pop("Timestamp") > 0
    second["_aws"].pop("Timestamp")
    assert first == second
    assert (first["request_id"], first["client"]) == ("from-the-fields", "web")
    assert first["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "AIProxy"


def test_another_listener_gets_a_record_and_the_stream_the_same_line(stream, monkeypatch, made_records):
    seen = []

    class Listener(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    stream.alone(Listener(logging.INFO))
    lines.write(logging.getLogger("service.usage"), "usage %s", ("/x",), dict(FIELDS))
    assert seen == ["usage /x"] and len(made_records) == 1
    [document] = without_time(stream.getvalue())
    assert (document["message"], document["model"]) == ("usage /x", "gpt-4o-mini")


def test_an_error_reporter_does_not_listen_to_info_lines(stream, monkeypatch, made_records):
    stream.alone(logging.Handler(logging.ERROR))
    lines.write(logging.getLogger("service.usage"), "usage", (), dict(FIELDS))
    assert made_records == [] and len(stream.getvalue().splitlines()) == 1


def test_a_quieter_level_a_filter_or_the_text_format_are_honoured(stream, monkeypatch):
    stream.alone()
    logger = logging.getLogger("service.usage")
    monkeypatch.setattr(logger, "level", logging.WARNING)
    lines.write(logger, "usage", (), dict(FIELDS))
    assert stream.getvalue() == ""
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    monkeypatch.setattr(logger, "filters", [lambda record: False])
    lines.write(logger, "usage", (), dict(FIELDS))
    assert stream.getvalue() == ""
    text = io.StringIO()
    configure_logging("INFO", "text", text)
    monkeypatch.setattr(logger, "filters", [])
    monkeypatch.setattr(
        logging.getLogger(), "handlers", [h for h in logging.getLogger().handlers if h.stream is text]
    )
    lines.write(logger, "usage %s", ("/x",), dict(FIELDS))
    assert " INFO [from-the-fields web] service.usage: usage /x model=" in text.getvalue()


def test_a_stream_that_cannot_be_written_never_fails_the_request(stream, monkeypatch, capsys):
    class Closed(io.StringIO):
        def write(self, text):
            raise OSError("the pipe is gone")

    stream.alone()
    monkeypatch.setattr(stream.handler, "stream", Closed())
    lines.write(logging.getLogger("service.usage"), "usage", (), dict(FIELDS))  # no exception
    assert "the pipe is gone" in capsys.readouterr().err


def test_outside_a_gevent_worker_an_access_line_is_written_at_once(stream, made_records):
    stream.alone()
    lines.write_soon(logging.getLogger("service.access"), "GET /x %s", (200,), dict(FIELDS))
    assert made_records == []
    [document] = without_time(stream.getvalue())
    assert (document["message"], document["request_id"]) == ("GET /x 200", "from-the-fields")


# Run in a process of its own, patched by gevent as the server's workers are.
_IN_A_WORKER = """
from gevent import monkey

monkey.patch_all()

import io, json, logging, sys

import gevent

from service.ops import lines
from service.ops.observability import configure_logging


class Writes(io.StringIO):
    count = 0

    def write(self, text):
        Writes.count += 1
        return super().write(text)


def lines_in(buffer):
    return [json.loads(line)["message"] for line in buffer.getvalue().splitlines()]


access, usage = logging.getLogger("service.access"), logging.getLogger("service.usage")
fields = {"request_id": "r1", "client": "web"}
buffer = Writes()
configure_logging("INFO", "json", buffer)
lines.write_soon(access, "POST /v1/chat/completions %s", (200,), fields)
lines.write(usage, "usage %s", ("/v1/chat/completions",), fields)
waited = lines_in(buffer)
gevent.sleep(0.01)  # the worker idles
idled = lines_in(buffer)
before = Writes.count
for number in range(lines.MAX_WAITING):
    lines.write_soon(access, "GET /%s 200", (number,), fields)
full = lines_in(buffer)[len(idled):]
writes = Writes.count - before
configure_logging("INFO", "json")  # to stdout: the last line waits there until the exit
lines.write_soon(access, "GET /last 200", (), fields)
print(json.dumps({"waited": waited, "idled": idled, "full": full, "writes": writes}), file=sys.stderr)
"""


def test_in_a_gevent_worker_access_lines_wait_for_an_idle_moment_a_full_batch_or_the_exit():
    done = subprocess.run(
        [sys.executable, "-c", _IN_A_WORKER], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stderr.strip().splitlines()[-1])
    # The usage record is written at once (the accounting); the access line when the worker idles.
    assert seen["waited"] == ["usage /v1/chat/completions"]
    assert seen["idled"] == ["usage /v1/chat/completions", "POST /v1/chat/completions 200"]
    # A full batch goes out without waiting for an idle moment, in one write.
    assert seen["full"] == [f"GET /{number} 200" for number in range(lines.MAX_WAITING)]
    assert seen["writes"] == 1
    # What still waits is written at the process's exit.
    assert [json.loads(line)["message"] for line in done.stdout.splitlines()] == ["GET /last 200"]

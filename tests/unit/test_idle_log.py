"""Log lines written while the worker waits (service.idle_log)."""

import io
import json
import logging
import subprocess
import sys
import threading

import pytest

from service.idle_log import IdleWriteHandler, idle_scheduler
from service.logformat import make_formatter
from testbed.server import ROOT


class Hub:
    """Stands in for the gevent hub's callback queue: the test decides when the hub runs."""

    def __init__(self):
        self.callbacks = []

    def schedule(self, callback):
        self.callbacks.append(callback)

    def run(self):
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


@pytest.fixture
def logged():
    hub, stream = Hub(), io.StringIO()
    handler = IdleWriteHandler(stream, hub.schedule)
    handler.setFormatter(make_formatter("json"))
    logger = logging.getLogger("test.idle_log")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)

    def lines():
        return [json.loads(line)["message"] for line in stream.getvalue().splitlines()]

    yield logger, hub, lines, handler
    logger.removeHandler(handler)


def test_info_lines_wait_for_the_hub_and_go_out_together_in_order(logged):
    logger, hub, lines, _ = logged
    logger.info("first %s", 1)
    logger.debug("second")
    logger.info("third")
    assert lines() == []  # nothing written in the request's path
    assert len(hub.callbacks) == 1  # one write scheduled for the whole batch
    hub.run()
    assert lines() == ["first 1", "second", "third"]
    hub.run()
    assert lines() == ["first 1", "second", "third"]  # written once


def test_a_warning_is_written_at_once_after_what_was_pending(logged):
    logger, hub, lines, _ = logged
    logger.info("access line")
    logger.warning("upstream stream failed")
    assert lines() == ["access line", "upstream stream failed"]
    logger.error("boom")
    assert lines()[-1] == "boom"
    hub.run()  # the scheduled write finds nothing left
    assert lines() == ["access line", "upstream stream failed", "boom"]


def test_the_message_is_the_one_at_logging_time(logged):
    logger, hub, lines, _ = logged
    fields = {"status": 200}
    logger.info("fields %s", fields)
    fields["status"] = 500
    hub.run()
    assert lines() == ["fields {'status': 200}"]


def test_flush_writes_what_is_pending(logged):
    # logging.shutdown() flushes every handler when the process exits.
    logger, _, lines, handler = logged
    logger.info("last words")
    handler.flush()
    assert lines() == ["last words"]


def test_a_record_from_another_thread_is_written_at_once(logged):
    logger, hub, lines, _ = logged
    worker = threading.Thread(target=logger.info, args=("from a thread",))
    worker.start()
    worker.join()
    assert lines() == ["from a thread"]
    assert hub.callbacks == []


def test_a_broken_record_is_reported_and_the_others_still_written(logged, capsys):
    logger, hub, lines, handler = logged
    broken = logging.LogRecord("test.idle_log", logging.INFO, __file__, 1, "needs two %s %s", ("one",), None)
    handler.handle(broken)  # straight to the handler: pytest's own handler would raise
    logger.info("fine")
    hub.run()
    assert lines() == ["fine"]
    assert "not enough arguments" in capsys.readouterr().err  # logging's own report


def test_outside_gevent_each_line_is_written_at_once():
    assert idle_scheduler() is None  # pytest does not monkey-patch


_UNDER_GEVENT = """
from gevent import monkey
monkey.patch_all()
import io, json, logging, gevent
from service.idle_log import IdleWriteHandler
from service.observability import configure_logging
buffer = io.StringIO()
handler = configure_logging("INFO", "json", buffer)
assert isinstance(handler, IdleWriteHandler), handler
logging.getLogger("service.access").info("GET / 200")
before = buffer.getvalue()
gevent.sleep(0)  # the request waits: the hub gets control
print(json.dumps([before, [json.loads(line)["message"] for line in buffer.getvalue().splitlines()]]))
"""


def test_under_gevent_the_hub_writes_the_line_when_it_next_runs():
    # As in a gunicorn gevent worker: socket patched before the app configures logging.
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_GEVENT], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    before, after = json.loads(done.stdout)
    assert before == ""
    assert after == ["GET / 200"]

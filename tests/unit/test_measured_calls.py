"""`measured`: every way a provider call can end writes its usage record once, with the status and
error kind the client is answered with, and a call cut by the server's shutdown becomes a 503."""

import logging

import gevent
import pytest
from gevent.event import Event

from service.core import shutdown
from service.core.errors import ProviderUnreachable, ServerStopping
from service.governance.usage import ProviderCall, measured, note_credential


@pytest.fixture
def records(caplog):
    caplog.set_level(logging.INFO, logger="service.usage")
    return lambda: [r for r in caplog.records if r.name == "service.usage"]


def test_a_call_that_ends_normally_is_recorded_by_its_caller_with_the_credential_it_named(records):
    call = ProviderCall("gpt-4o-mini", deployment="openai/gpt-4o-mini")
    with measured(call) as measuring:
        assert measuring is call
        note_credential("production/openai_api_key")
    assert records() == []  # the caller finishes it, with the answer's usage
    call.finish(200, usage={"prompt_tokens": 3, "completion_tokens": 4})
    [record] = records()
    assert (record.status, record.credential, record.total_tokens) == (200, "production/openai_api_key", 7)
    note_credential("not/this/one")  # no call is measured any more
    assert call.credential == "production/openai_api_key"


def test_a_provider_error_is_recorded_with_its_status_and_kind_and_raised_as_it_was(records):
    call = ProviderCall("gpt-4o-mini")
    error = ProviderUnreachable("The upstream did not answer.", provider="openai")
    with pytest.raises(ProviderUnreachable) as raised, measured(call):
        raise error
    assert raised.value is error
    [record] = records()
    assert (record.status, record.error) == (error.status, error.kind)


def test_any_other_failure_is_recorded_as_a_500_and_raised(records):
    with pytest.raises(KeyError), measured(ProviderCall("gpt-4o-mini")):
        raise KeyError("bug")
    [record] = records()
    assert (record.status, record.error) == (500, "exception")


def test_a_call_waiting_when_the_server_stops_is_a_503_and_so_is_one_started_after(records, monkeypatch):
    monkeypatch.setattr(shutdown, "_stopping", False)
    waiting = Event()

    def call_provider():
        with measured(ProviderCall("gpt-4o-mini")):
            waiting.set()
            gevent.sleep(5)

    greenlet = gevent.spawn(call_provider)
    waiting.wait(2)
    shutdown.cut_provider_calls()
    greenlet.join(2)
    assert isinstance(greenlet.exception, ServerStopping)
    with pytest.raises(ServerStopping), measured(ProviderCall("gpt-4o-mini")):
        pytest.fail("a call after the stop must not start")
    assert [(r.status, r.error) for r in records()] == [(503, "shutdown"), (503, "shutdown")]

"""The production server holds many slow requests at once and stops gracefully on SIGTERM.

LLM calls take seconds to minutes, so these run against a fake upstream that waits before it
answers, through the real server process with ONE worker.
"""

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from testbed.openai_upstream import Stream
from testbed.proxy import proxy_with_fake_openai
from tests.support.http import fetch
from tests.support.waiting import wait_until

SLOW = 200  # concurrent in-flight requests one worker must hold


def get(url: str, timeout: float = 60) -> int:
    return fetch(url, timeout=timeout).status


def one_worker(**extra: str) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-fake", "AIPROXY_WORKERS": "1", **extra}


def test_one_worker_holds_200_slow_requests_and_fast_ones_do_not_queue():
    # 6 s upstream delay: room for all 200 to arrive (threads start slowly on a busy CI machine)
    # before the first of them is answered.
    with proxy_with_fake_openai(one_worker(), delay=6.0) as (fake, server):
        finished: list[int] = []
        with ThreadPoolExecutor(max_workers=SLOW) as pool:
            futures = [
                pool.submit(lambda: finished.append(get(server.url + "/v1/models"))) for _ in range(SLOW)
            ]
            # All 200 reach the upstream before any is answered: they are in flight together.
            wait_until(lambda: len(fake.requests) >= SLOW, timeout=30)
            assert finished == []
            started = time.monotonic()
            assert get(server.url + "/") == 200
            assert get(server.url + "/test") == 200
            fast = time.monotonic() - started
            assert finished == [], "the fast requests waited for slow ones"
            for future in futures:
                future.result()
        assert fast < 1.0
        assert finished == [200] * SLOW


def test_sigterm_lets_in_flight_requests_finish():
    with proxy_with_fake_openai(one_worker(AIPROXY_GRACEFUL_TIMEOUT="20"), delay=2.0) as (fake, server):
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda: results.append(get(server.url + "/v1/models"))) for _ in range(5)
        ]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(fake.requests) >= 5, timeout=30)
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=30)
        assert results == [200] * 5
        assert server.process.wait(timeout=30) == 0
        with pytest.raises(urllib.error.URLError):
            get(server.url + "/", timeout=2)  # it no longer accepts connections
    assert "Handling signal: term" in server.log()


def test_grace_period_is_bounded():
    with proxy_with_fake_openai(one_worker(AIPROXY_GRACEFUL_TIMEOUT="1"), delay=60.0) as (fake, server):
        outcome: list[str] = []

        def cut_off() -> None:
            try:
                get(server.url + "/v1/models", timeout=30)
                outcome.append("answered")
            except OSError:
                outcome.append("cut off")

        thread = threading.Thread(target=cut_off, daemon=True)
        thread.start()
        wait_until(lambda: len(fake.requests) >= 1, timeout=30)
        stopped = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=20)
        assert time.monotonic() - stopped < 10  # not the upstream's 60 s
        thread.join(timeout=10)
        assert outcome == ["cut off"]


def test_a_stream_waiting_on_a_silent_upstream_is_ended_with_an_error_event_before_the_grace_ends():
    grace = 4  # seconds; the worker cuts waiting streams a second before it ends
    settings = one_worker(AIPROXY_GRACEFUL_TIMEOUT=str(grace), LOG_FORMAT="json")
    with proxy_with_fake_openai(settings) as (fake, server):
        fake.enqueue(Stream(["never sent"], pause=60))
        body = json.dumps({"model": "gpt-4o-mini", "messages": [], "stream": True}).encode()
        request = urllib.request.Request(server.url + "/v1/chat/completions", body)
        with urllib.request.urlopen(request, timeout=30) as stream:
            first = stream.readline()
            assert first.startswith(b"data: {")
            stopped = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            rest = stream.read()
        # The client learns that its stream was cut, in an event its SDK raises as an API error.
        error = json.loads(rest.strip().removeprefix(b"data: "))["error"]
        assert error["code"] == "server_shutting_down"
        assert time.monotonic() - stopped < grace
        assert server.process.wait(timeout=20) == 0
    usage = [r for r in server.log_records() if r["logger"] == "service.usage"]
    assert [r["error"] for r in usage] == ["shutdown"]

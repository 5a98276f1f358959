"""The production server holds many slow requests at once and stops gracefully on SIGTERM.

LLM calls take seconds to minutes, so these run against a fake upstream that waits before it
answers, through the real server process with ONE worker.
"""

import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.server import running_server

SLOW = 200  # concurrent in-flight requests one worker must hold


def get(url: str, timeout: float = 60) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def settings_for(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    return {"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-fake", "AIPROXY_WORKERS": "1", **extra}


def test_one_worker_holds_200_slow_requests_and_fast_ones_do_not_queue():
    with FakeOpenAI(delay=3.0) as fake, running_server(settings_for(fake)) as server:
        finished: list[int] = []
        with ThreadPoolExecutor(max_workers=SLOW) as pool:
            futures = [
                pool.submit(lambda: finished.append(get(server.url + "/v1/models"))) for _ in range(SLOW)
            ]
            # All 200 reach the upstream before any is answered: they are in flight together.
            wait_until(lambda: len(fake.requests) >= SLOW)
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
    with (
        FakeOpenAI(delay=2.0) as fake,
        running_server(settings_for(fake, AIPROXY_GRACEFUL_TIMEOUT="20")) as server,
    ):
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda: results.append(get(server.url + "/v1/models"))) for _ in range(5)
        ]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(fake.requests) >= 5)
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=30)
        assert results == [200] * 5
        assert server.process.wait(timeout=30) == 0
        with pytest.raises(urllib.error.URLError):
            get(server.url + "/", timeout=2)  # it no longer accepts connections
    assert "Handling signal: term" in server.log()


def test_grace_period_is_bounded():
    with (
        FakeOpenAI(delay=60.0) as fake,
        running_server(settings_for(fake, AIPROXY_GRACEFUL_TIMEOUT="1")) as server,
    ):
        outcome: list[str] = []

        def cut_off() -> None:
            try:
                get(server.url + "/v1/models", timeout=30)
                outcome.append("answered")
            except OSError:
                outcome.append("cut off")

        thread = threading.Thread(target=cut_off, daemon=True)
        thread.start()
        wait_until(lambda: len(fake.requests) >= 1)
        stopped = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=20)
        assert time.monotonic() - stopped < 10  # not the upstream's 60 s
        thread.join(timeout=10)
        assert outcome == ["cut off"]

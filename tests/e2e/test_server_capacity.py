"""The production server holds many slow requests at once and stops gracefully on SIGTERM.

LLM calls take seconds to minutes, so these run against a fake upstream that waits before it
answers, through the real server process with ONE worker.
"""

import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from testbed.bedrock_runtime import FakeBedrock
from testbed.bedrock_runtime import Hang as BedrockHang
from testbed.openai_upstream import Hang, Stream
from testbed.proxy import proxy_with_fake_openai
from tests.support.assessment import PROMPT, RUBRIC
from tests.support.http import Response, fetch
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


GRACE = 4  # seconds; the worker cuts what is left 2 s before the master's kill


def test_requests_waiting_on_their_provider_when_the_grace_ends_are_answered_503_before_the_kill():
    """Both providers hang for a minute: every request in flight (relayed, grading, Bedrock) gets a
    JSON 503 it can retry and writes its access line and usage record, and the server is gone
    before the master would kill its worker, though an idle keep-alive connection is open."""
    chat = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}).encode()
    form = urllib.parse.urlencode({"code": "var x = 1;", "prompt": PROMPT, "rubric": RUBRIC}).encode()
    requests = {
        **{f"chat-{n}": ("/v1/chat/completions", chat) for n in range(6)},
        "embeddings": (
            "/v1/embeddings",
            json.dumps({"model": "text-embedding-3-small", "input": "Hi"}).encode(),
        ),
        "models": ("/v1/models", None),
        **{f"assessment-{n}": ("/assessment", form) for n in range(2)},
        "bedrock": ("/v1/chat/completions", chat.replace(b"gpt-4o-mini", b"bedrock/claude")),
    }
    answers: dict[str, tuple[float, Response]] = {}
    with FakeBedrock() as bedrock:
        bedrock.enqueue(BedrockHang(60))
        settings = one_worker(
            AIPROXY_GRACEFUL_TIMEOUT=str(GRACE),
            LOG_FORMAT="json",
            AWS_REGION="us-west-2",
            AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
            AWS_SECRET_ACCESS_KEY="not-a-real-secret",
            AWS_ENDPOINT_URL_BEDROCK_RUNTIME=bedrock.url,
        )
        with proxy_with_fake_openai(settings) as (fake, server):
            fake.responder = lambda request: Hang(60)
            idle = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30)
            idle.sendall(b"GET / HTTP/1.1\r\nHost: proxy\r\n\r\n")
            assert idle.recv(65536).startswith(b"HTTP/1.1 200")  # then it stays open, idle

            def send(request_id: str, path: str, body: bytes | None) -> None:
                answer = fetch(server.url + path, body, headers={"X-Request-Id": request_id}, timeout=30)
                answers[request_id] = (time.monotonic(), answer)

            with ThreadPoolExecutor(max_workers=len(requests)) as pool:
                for request_id, (path, body) in requests.items():
                    pool.submit(send, request_id, path, body)
                wait_until(lambda: len(fake.requests) + len(bedrock.requests) == len(requests), timeout=30)
                stopped = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=GRACE + 10) == 0
            assert time.monotonic() - stopped < GRACE, "the worker waited for the master's kill"
            idle.close()
    assert sorted(answers) == sorted(requests)
    for request_id, (answered, answer) in answers.items():
        assert answered - stopped > GRACE / 4, f"{request_id} was cut before the grace period was up"
        assert answer.status == 503, (request_id, answer.body)
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.headers["X-Request-Id"] == request_id
        error = json.loads(answer.body)["error"]
        assert (error["type"], error["code"]) == ("service_unavailable", "server_shutting_down")
        assert "shutting down" in error["message"]
    records = server.log_records()
    for request_id, (path, body) in requests.items():
        mine = [r for r in records if r.get("request_id") == request_id]
        method = "POST" if body else "GET"
        assert [r["message"] for r in mine if r["logger"] == "service.access"] == [f"{method} {path} 503"]
        (usage,) = [r for r in mine if r["logger"] == "service.usage"]
        assert (usage["status"], usage["error"]) == (503, "shutdown")
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")]
    assert "SIGKILL" not in server.log()


def test_a_stream_waiting_on_a_silent_upstream_is_ended_with_an_error_event_before_the_grace_ends():
    settings = one_worker(AIPROXY_GRACEFUL_TIMEOUT=str(GRACE), LOG_FORMAT="json")
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
        assert time.monotonic() - stopped < GRACE
        assert server.process.wait(timeout=20) == 0
    usage = [r for r in server.log_records() if r["logger"] == "service.usage"]
    assert [r["error"] for r in usage] == ["shutdown"]

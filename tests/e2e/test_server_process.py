"""The real server process, started as `make run` starts it, over real HTTP."""

import http.client
import json
import subprocess
import time
import urllib.request
from urllib.parse import urlsplit

import pytest

from testbed.server import GUNICORN, ROOT, SERVER_ARGS, running_server, server_env, stop_process
from tests.support.http import fetch


def test_server_answers_health_and_json_errors():
    with running_server() as server:
        with urllib.request.urlopen(server.url + "/") as response:
            assert response.status == 200
            assert response.headers["X-Request-Id"]
        missing = fetch(server.url + "/no/such/route")
        assert missing.status == 404
        assert json.loads(missing.body)["error"]["type"] == "not_found_error"
        log = server.log()
    assert "gevent" in log


def test_answers_with_and_without_a_body_follow_each_other_whole_on_one_connection():
    # A whole answer's head waits for its body to go out with it (service.server.answer_socket);
    # one with no body (HEAD, a 304) must still have its head sent, before the next request is read.
    with running_server() as server:
        host, port = urlsplit(server.url).netloc.split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            answers = []
            for method, path in [("HEAD", "/"), ("GET", "/"), ("HEAD", "/"), ("GET", "/no/such/route")]:
                connection.request(method, path)
                response = connection.getresponse()
                answers.append((method, response.status, response.read(), response.getheader("Connection")))
        finally:
            connection.close()
    assert [(method, status, connection) for method, status, _, connection in answers] == [
        ("HEAD", 200, "keep-alive"),
        ("GET", 200, "keep-alive"),
        ("HEAD", 200, "keep-alive"),
        ("GET", 404, "keep-alive"),
    ]
    assert answers[0][2] == answers[2][2] == b""
    assert answers[1][2] and json.loads(answers[3][2])["error"]["type"] == "not_found_error"


def test_real_server_reports_to_honeybadger_and_logs_json():
    from testbed.honeybadger import HoneybadgerCatcher

    with HoneybadgerCatcher() as catcher:
        settings = {
            "HONEYBADGER_API_KEY": "hb-e2e-key-000",
            "HONEYBADGER_ENDPOINT": catcher.url,
            "LOG_FORMAT": "json",
        }
        with running_server(settings) as server:
            # /test/exception fails with the JSON error; /test/error only logs at ERROR.
            failed = fetch(server.url + "/test/exception", headers={"X-Request-Id": "e2e/test/exception"})
            assert failed.status == 500
            assert json.loads(failed.body)["error"]["type"] == "server_error"
            assert fetch(server.url + "/test/error", headers={"X-Request-Id": "e2e/test/error"}).status == 200
            notices = catcher.wait_for(2)
        lines = server.log_records()
    assert sorted(n["request"]["context"]["request_id"] for n in notices) == [
        "e2e/test/error",
        "e2e/test/exception",
    ]
    assert sorted(n["error"]["class"] for n in notices) == ["DiagnosticException", "ERROR log"]
    assert "hb-e2e-key-000" not in server.log()
    access = [line for line in lines if line["logger"] == "service.access"]
    assert {line["request_id"] for line in access} >= {"e2e/test/error", "e2e/test/exception"}


def test_a_second_server_on_a_port_already_served_stops_with_one_line(tmp_path):
    with running_server() as first:
        port = urlsplit(first.url).port
        env = server_env({}, port)
        env["PYTHONPATH"] = str(ROOT)
        started = time.monotonic()
        second = subprocess.Popen(
            [GUNICORN, *SERVER_ARGS],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = second.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            stop_process(second, timeout=10)
            pytest.fail(f"a second server kept running on port {port}, sharing it with the first")
        assert time.monotonic() - started < 10
        assert second.returncode != 0
        assert stderr.strip().splitlines() == [
            f"aiproxy: cannot listen on 127.0.0.1:{port}: another process is already listening there "
            "(stop it, or set PORT to a free port)"
        ]
        assert "Traceback" not in stdout + stderr
        for _ in range(20):  # the first server still answers every connection
            with urllib.request.urlopen(first.url + "/", timeout=5) as response:
                assert response.status == 200

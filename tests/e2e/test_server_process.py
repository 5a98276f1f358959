"""The real server process, started as `make run` starts it, over real HTTP."""

import json
import urllib.request

from testbed.server import running_server
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

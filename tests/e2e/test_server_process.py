"""The real server process, started as `make run` starts it, over real HTTP."""

import json
import urllib.error
import urllib.request

from tests.support.server import running_server


def test_server_answers_health_and_json_errors():
    with running_server() as server:
        with urllib.request.urlopen(server.url + "/") as response:
            assert response.status == 200
            assert response.headers["X-Request-Id"]
        try:
            urllib.request.urlopen(server.url + "/no/such/route")
        except urllib.error.HTTPError as error:
            assert error.code == 404
            assert json.load(error)["error"]["type"] == "not_found_error"
        log = server.log()
    assert "gevent" in log

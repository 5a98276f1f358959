"""Start-up of the real server process (gunicorn, as `make run`) with and without a key store."""

import json
import subprocess
import urllib.error
import urllib.request

import pytest

from service.governance.key_store import hash_key
from testbed.server import GUNICORN, ROOT, SERVER_ARGS, free_port, running_server, server_env

KEY = "aip_startup-test-key-0000000000000000000000001"


def start_and_wait(settings: dict[str, str], cwd) -> subprocess.CompletedProcess:
    """Run the server with `settings`; it is expected to stop by itself."""
    env = server_env(settings, free_port())
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [GUNICORN, *SERVER_ARGS], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("environment_type", ["test", "production"])
def test_without_a_key_store_test_and_production_stop_with_one_clear_line(tmp_path, environment_type):
    result = start_and_wait({"ENVIRONMENT_TYPE": environment_type}, tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"aiproxy: configuration error: no client key store: ENVIRONMENT_TYPE={environment_type} "
        "requires client authentication; set AIPROXY_CLIENT_KEYS (README: Client keys)"
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_an_invalid_key_store_stops_start_up_without_printing_it(tmp_path):
    store = json.dumps({"web": {"keys": [hash_key(KEY)]}, "batch": {"keys": [KEY]}})
    result = start_and_wait({"AIPROXY_CLIENT_KEYS": store}, tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "aiproxy: configuration error: the client key store in AIPROXY_CLIENT_KEYS is not valid: "
        "client 'batch': keys[0] is not a sha256 hex digest (64 hex digits) "
        "(it looks like a key: store its hash, from `python -m service.keys hash`)"
    ]
    output = result.stdout + result.stderr
    assert KEY not in output and hash_key(KEY) not in output


def test_elsewhere_the_server_runs_open_and_says_so_once():
    with running_server({"ENVIRONMENT_TYPE": "development"}) as server:
        with urllib.request.urlopen(server.url + "/test") as response:
            assert response.status == 200
        log = server.log()
    assert log.count("the proxy is OPEN") == 1


def test_with_a_key_store_the_server_requires_keys():
    with running_server(
        {
            "ENVIRONMENT_TYPE": "production",
            "AIPROXY_CLIENT_KEYS": json.dumps({"web": {"keys": [hash_key(KEY)]}}),
        }
    ) as server:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url + "/test")
        assert refused.value.code == 401
        assert refused.value.headers["WWW-Authenticate"] == "Bearer"
        request = urllib.request.Request(server.url + "/test", headers={"Authorization": KEY})
        with urllib.request.urlopen(request) as response:
            assert response.status == 200
        with urllib.request.urlopen(server.url + "/") as response:
            assert response.status == 200
        log = server.log()
    assert "the proxy is OPEN" not in log
    assert "Client key store loaded from AIPROXY_CLIENT_KEYS: 1 client(s)" in log

"""Client keys and their hashes never reach logs, Honeybadger or responses; log lines name the client.

A real server process logs JSON and reports to a local Honeybadger catcher while clients send good,
wrong and malformed keys every way they can; then everything it wrote is searched.
"""

import json

from service.governance.key_store import hash_key
from testbed.honeybadger import HoneybadgerCatcher
from testbed.proxy import proxy_with_fake_openai
from tests.support.http import fetch

PROVIDER_KEY = "sk-provider-leak-test-000000000001"
HONEYBADGER_KEY = "hbp_leak_test_reporting_key_0002"
WEB_KEY = "aip_leak-test-web-key-00000000000000000000003"
WEB_KEY_2 = "aip_leak-test-web-key-00000000000000000000004"
BATCH_KEY = "aip_leak-test-batch-key-000000000000000000005"
WRONG_KEY = "aip_leak-test-wrong-key-000000000000000000006"
SECRETS = (WEB_KEY, WEB_KEY_2, BATCH_KEY, WRONG_KEY)
STORE = {
    "web": {"keys": [hash_key(WEB_KEY), hash_key(WEB_KEY_2)]},
    "batch": {"keys": [hash_key(BATCH_KEY)], "rpm": 1},
}


def send(
    url: str, authorization: str | None, request_id: str, data: bytes | None = None
) -> tuple[int, bytes]:
    headers = {"X-Request-Id": request_id, "Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = fetch(url, data, headers)
    return response.status, response.body


def test_keys_and_hashes_appear_nowhere_and_every_line_names_its_client():
    chat = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    with HoneybadgerCatcher() as catcher:
        settings = {
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
            "HONEYBADGER_API_KEY": HONEYBADGER_KEY,
            "HONEYBADGER_ENDPOINT": catcher.url,
            "HONEYBADGER_FORCE_SYNC": "1",
            "OPENAI_API_KEY": PROVIDER_KEY,
            "AIPROXY_CLIENT_KEYS": json.dumps(STORE),
            "ENVIRONMENT_TYPE": "production",
        }
        with proxy_with_fake_openai(settings) as (_, server):
            u = server.url
            # (request id, expected client, status, response) for every request sent.
            sent = [
                ("r-web-test", "web", *send(u + "/test", f"Bearer {WEB_KEY}", "r-web-test")),
                ("r-web-bare", "web", *send(u + "/test/error", WEB_KEY_2, "r-web-bare")),
                ("r-web-exc", "web", *send(u + "/test/exception", f"Bearer {WEB_KEY}", "r-web-exc")),
                ("r-web-crit", "web", *send(u + "/test/critical", f"Bearer {WEB_KEY}", "r-web-crit")),
                (
                    "r-web-chat",
                    "web",
                    *send(u + "/v1/chat/completions", f"Bearer {WEB_KEY}", "r-web-chat", chat),
                ),
                ("r-batch-1", "batch", *send(u + "/test", f"Bearer {BATCH_KEY}", "r-batch-1")),
                ("r-batch-429", "batch", *send(u + "/test/error", f"Bearer {BATCH_KEY}", "r-batch-429")),
                ("r-wrong", "anonymous", *send(u + "/test/exception", f"Bearer {WRONG_KEY}", "r-wrong")),
                ("r-bare-wrong", "anonymous", *send(u + "/test/error", WRONG_KEY, "r-bare-wrong")),
                ("r-basic", "anonymous", *send(u + "/test", f"Basic {WEB_KEY}", "r-basic")),
                ("r-hash", "anonymous", *send(u + "/test", f"Bearer {hash_key(WEB_KEY)}", "r-hash")),
                ("r-query", "anonymous", *send(u + f"/test/exception?api-key={WEB_KEY}", None, "r-query")),
                ("r-none", "anonymous", *send(u + "/test/critical", None, "r-none")),
            ]
            # Reports are sent before each answer (HONEYBADGER_FORCE_SYNC): all are in by now.
            notices = catcher.wait_for(3)
        log = server.log()

    statuses = {request_id: status for request_id, _, status, _ in sent}
    assert statuses["r-web-test"] == statuses["r-web-bare"] == statuses["r-web-chat"] == 200
    assert statuses["r-web-exc"] == 500
    assert statuses["r-batch-429"] == 429
    assert all(
        statuses[r] == 401 for r in ("r-wrong", "r-bare-wrong", "r-basic", "r-hash", "r-query", "r-none")
    )

    # Nothing the server wrote or sent contains a key or a key's hash.
    responses = b"".join(body for *_, body in sent).decode()
    reports = catcher.raw()
    for secret in SECRETS:
        for text, where in ((log, "the log"), (reports, "Honeybadger"), (responses, "a response")):
            assert secret not in text, f"a key reached {where}"
            assert hash_key(secret) not in text, f"a key's hash reached {where}"

    # Every line of a request names the client that sent it (anonymous when refused).
    lines = server.log_records()
    for request_id, client, *_ in sent:
        own = [line for line in lines if line.get("request_id") == request_id]
        assert own, f"no log line for {request_id}"
        assert {line["client"] for line in own} == {client}, (request_id, own)
    usage = [line for line in lines if line["logger"] == "service.usage"]
    assert [(u["request_id"], u["client"]) for u in usage] == [("r-web-chat", "web")]

    # Reports name the client too.
    by_request = {n["request"]["context"]["request_id"]: n["request"]["context"] for n in notices}
    assert by_request["r-web-exc"]["client"] == "web"
    assert by_request["r-web-bare"]["client"] == "web"
    # Refused requests never ran their route, so nothing was reported for them.
    assert sorted(by_request) == ["r-web-bare", "r-web-crit", "r-web-exc"]

"""Model groups in real server processes: the official client never sees a failing deployment, and
a deployment's cooldown is shared by every process through the store."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack

import openai

from testbed.openai_upstream import Fail, FakeOpenAI, Reply
from testbed.redis_server import RedisServer
from testbed.server import running_server
from tests.support.http import fetch

DEFAULT_KEY = "sk-default-upstream-groups"
BACKUP_KEY = "backup-upstream-key-groups-01"


def group_settings(primary: FakeOpenAI, backup: FakeOpenAI, **more: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": primary.url,
        "OPENAI_API_KEY": DEFAULT_KEY,
        "BACKUP_KEY": BACKUP_KEY,
        "AIPROXY_UPSTREAMS": json.dumps({"backup": {"base_url": backup.url, "key_env": "BACKUP_KEY"}}),
        "AIPROXY_MODEL_ALIASES": json.dumps({"gpt": ["gpt-4o-mini", "backup/gpt-4o-mini"]}),
        "AIPROXY_COOLDOWN_SECONDS": "60",
        **more,
    }


def test_the_official_client_sees_one_answer_while_the_first_deployment_answers_503():
    with FakeOpenAI() as primary, FakeOpenAI() as backup:
        primary.responder = lambda request: Fail(503, "The primary deployment is overloaded")
        backup.enqueue(Reply(["All is well."]))
        with running_server(group_settings(primary, backup)) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="gpt", messages=[{"role": "user", "content": "Hello"}]
            )
            answer = raw.parse()
            assert answer.choices[0].message.content == "All is well."
            assert raw.headers["x-aiproxy-deployment"] == "backup/gpt-4o-mini"
            stream = client.chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "Hello"}], stream=True
            )
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
            assert text  # the backup's stream, whole
        assert len(primary.requests) == 1  # tried once, then passed over while it cools down


def test_a_cooldown_is_shared_by_every_process_through_the_store():
    with FakeOpenAI() as primary, FakeOpenAI() as backup, RedisServer() as store, ExitStack() as stack:
        settings = group_settings(primary, backup, AIPROXY_REDIS_URL=store.url)
        first, second = (stack.enter_context(running_server(settings)) for _ in range(2))
        primary.enqueue(Fail(503, "overloaded"))
        chat = json.dumps({"model": "gpt", "messages": [{"role": "user", "content": "Hi"}]}).encode()
        headers = {"Content-Type": "application/json"}
        assert fetch(first.url + "/v1/chat/completions", chat, headers).status == 200
        assert len(primary.requests) == 1
        time.sleep(1.5)  # the other process reads the store's cooldowns every second
        for _ in range(3):
            answer = fetch(second.url + "/v1/chat/completions", chat, headers)
            assert answer.status == 200
            assert answer.headers["x-aiproxy-deployment"] == "backup/gpt-4o-mini"
        assert len(primary.requests) == 1  # the second process never tried the cooling deployment


def test_a_group_serves_each_region_from_its_deployment_for_it():
    region_header = "x-amzn-waf-aiproxy-region"
    group = [{"model": "gpt-4o-mini", "regions": ["US"]}, "backup/gpt-4o-mini"]
    with FakeOpenAI() as primary, FakeOpenAI() as backup:
        settings = group_settings(
            primary,
            backup,
            AIPROXY_MODEL_ALIASES=json.dumps({"tutor": group}),
            AIPROXY_REGION_HEADER=region_header,
            LOG_FORMAT="json",
        )
        with running_server(settings) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)

            def served(region: str | None) -> str:
                headers = {region_header: region} if region else {}
                raw = client.chat.completions.with_raw_response.create(
                    model="tutor", messages=[{"role": "user", "content": "Hi"}], extra_headers=headers
                )
                return raw.headers["x-aiproxy-deployment"]

            assert served("DE") == "backup/gpt-4o-mini"
            assert served("US") == "openai/gpt-4o-mini"
            assert served(None) == "backup/gpt-4o-mini"  # no region known: no deployment with regions
            usage = [r for r in server.log_records() if r.get("message", "").startswith("usage")]
            assert [(r.get("region"), r["model_asked"], r["deployment"]) for r in usage] == [
                ("DE", "tutor", "backup/gpt-4o-mini"),
                ("US", "tutor", "openai/gpt-4o-mini"),
                (None, "tutor", "backup/gpt-4o-mini"),
            ]
        # Without AIPROXY_REGION_HEADER the same header is read by nobody.
        del settings["AIPROXY_REGION_HEADER"]
        with running_server(settings) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
            assert served("US") == "backup/gpt-4o-mini"

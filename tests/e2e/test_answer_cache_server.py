"""The answer cache (issue 32): a real server of two workers sharing a real Redis, in front of the fake
provider, which counts the calls that reach it.

Each test asks its own question (a marker in the message), so what one test keeps does not answer
another's. The store's outage is the last test of the module.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from service.governance.key_store import hash_key
from testbed.openai_upstream import Fail, FakeOpenAI, Recorded, Reply
from testbed.redis_server import RedisServer
from testbed.server import running_server
from tests.support.http import Response, fetch
from tests.support.waiting import wait_until

PROVIDER_KEY = "sk-provider-key-answer-cache"
STORE_PASSWORD = "store-password-answer-cache"
# $10 per million tokens each way.
PRICES = json.dumps(
    {"gpt-4o-mini": {"input": 10, "output": 10}, "text-embedding-3-small": {"input": 1, "output": 0}}
)
CACHE = {"ttl_s": 3600, "max_answer_bytes": 1048576}
CLIENTS = {
    "cached": {"cache": CACHE},
    "other": {"cache": CACHE},  # its own entries: it never reads "cached"'s
    "team-a": {"cache": {**CACHE, "namespace": "team"}},
    "team-b": {"cache": {**CACHE, "namespace": "team"}},
    # The same namespace under a safety policy: answers kept for "team" (no policy) never reach it.
    "team-safe": {"cache": {**CACHE, "namespace": "team"}, "safety": "students"},
    "sampled": {"cache": CACHE, "cache_nondeterministic": True},
    "small": {"cache": {"ttl_s": 60, "max_answer_bytes": 600}},
    "metered": {"cache": CACHE, "tpm": 100000, "budget_usd_per_day": 5},
    "plain": {},  # no cache
}
_markers = itertools.count()


def key_of(client: str) -> str:
    return f"aip_{client}-answer-cache-test-key-000000000000001"


STORE = json.dumps({name: {"keys": [hash_key(key_of(name))], **entry} for name, entry in CLIENTS.items()})


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI(api_key=PROVIDER_KEY) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def store():
    with RedisServer(password=STORE_PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def server(fake, store):
    settings = {
        "OPENAI_BASE_URL": fake.url,
        "OPENAI_API_KEY": PROVIDER_KEY,
        "AIPROXY_CLIENT_KEYS": STORE,
        "AIPROXY_REDIS_URL": store.url,
        "AIPROXY_REDIS_PASSWORD": STORE_PASSWORD,
        "AIPROXY_PRICES": PRICES,
        "AIPROXY_SAFETY_POLICIES": json.dumps(
            {"students": {"output": [{"check": "blocklist", "words": ["nope"]}]}}
        ),
        "AIPROXY_WORKERS": "2",
        "LOG_FORMAT": "json",
    }
    with running_server(settings) as running:
        yield running


def question() -> str:
    return f"question {next(_markers)} {time.time()}"


def post(server, client: str, path: str, body: dict | bytes, **headers: str) -> Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Authorization": f"Bearer {key_of(client)}", "Content-Type": "application/json", **headers}
    return fetch(server.url + path, data, sent, timeout=30)


def chat(server, client: str, text: str, cache_control: str | None = None, **fields) -> Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **fields}
    headers = {"Cache-Control": cache_control} if cache_control else {}
    return post(server, client, "/v1/chat/completions", body, **headers)


def calls(fake: FakeOpenAI, text: str, path: str = "/chat/completions") -> list[Recorded]:
    return [r for r in fake.requests_to(path) if text in json.dumps(r.body)]


def content(answer: Response) -> str:
    return json.loads(answer.body)["choices"][0]["message"]["content"]


def test_the_same_chat_twice_reaches_the_provider_once_and_is_answered_byte_for_byte(server, fake):
    text = question()
    first = chat(server, "cached", text)
    assert first.status == 200 and first.headers["x-aiproxy-cache"] == "miss"
    # Two workers, one store: whichever worker takes the next request finds the entry.
    for _ in range(3):
        again = chat(server, "cached", text)
        assert again.status == 200
        assert again.headers["x-aiproxy-cache"] == "hit"
        assert again.body == first.body
        assert int(again.headers["Age"]) >= 0
        assert again.headers["x-aiproxy-deployment"] == first.headers["x-aiproxy-deployment"]
    assert len(calls(fake, text)) == 1


def test_key_order_and_whitespace_in_the_body_do_not_matter(server, fake):
    text = question()
    first = chat(server, "cached", text, temperature=0)
    said = json.dumps(text).encode()
    reordered = (
        b'{ "temperature" : 0,\n  "messages": [{"content": ' + said + b', "role": "user"}],'
        b'  "model": "gpt-4o-mini" }'
    )
    again = post(server, "cached", "/v1/chat/completions", reordered)
    assert again.headers["x-aiproxy-cache"] == "hit" and again.body == first.body
    assert len(calls(fake, text)) == 1


def test_another_client_misses_unless_both_name_the_same_namespace(server, fake):
    text = question()
    chat(server, "cached", text)
    assert chat(server, "other", text).headers["x-aiproxy-cache"] == "miss"
    assert len(calls(fake, text)) == 2
    shared = question()
    first = chat(server, "team-a", shared)
    again = chat(server, "team-b", shared)
    assert again.headers["x-aiproxy-cache"] == "hit" and again.body == first.body
    assert len(calls(fake, shared)) == 1
    # Under a safety policy the answer is checked again: a namespace never carries one past it.
    checked = chat(server, "team-safe", shared)
    assert checked.headers["x-aiproxy-cache"] == "miss"
    assert chat(server, "team-safe", shared).headers["x-aiproxy-cache"] == "hit"
    assert len(calls(fake, shared)) == 2


def test_a_client_without_a_cache_is_never_answered_from_one(server, fake):
    text = question()
    answers = [chat(server, "plain", text) for _ in range(2)]
    assert all(a.status == 200 and "x-aiproxy-cache" not in a.headers for a in answers)
    assert len(calls(fake, text)) == 2


def test_no_cache_skips_the_lookup_and_keeps_the_new_answer(server, fake):
    text = question()
    fake.enqueue(Reply(contents=["old answer"]), Reply(contents=["new answer"]), path="/chat/completions")
    assert content(chat(server, "cached", text)) == "old answer"
    refreshed = chat(server, "cached", text, cache_control="no-cache")
    assert refreshed.headers["x-aiproxy-cache"] == "miss" and content(refreshed) == "new answer"
    again = chat(server, "cached", text)
    assert again.headers["x-aiproxy-cache"] == "hit" and again.body == refreshed.body
    assert len(calls(fake, text)) == 2


def test_no_store_neither_reads_nor_writes(server, fake):
    text = question()
    kept = chat(server, "cached", text)
    skipped = chat(server, "cached", text, cache_control="no-store")
    assert skipped.headers["x-aiproxy-cache"] == "miss"
    assert len(calls(fake, text)) == 2
    fresh = question()
    chat(server, "cached", fresh, cache_control="no-store")
    assert chat(server, "cached", fresh).headers["x-aiproxy-cache"] == "miss"  # nothing was kept
    assert chat(server, "cached", text).body == kept.body


def test_max_age_accepts_only_an_entry_young_enough(server, fake):
    text = question()
    first = chat(server, "cached", text)
    time.sleep(2.1)
    young = chat(server, "cached", text, cache_control="max-age=60")
    assert young.headers["x-aiproxy-cache"] == "hit" and young.body == first.body
    assert int(young.headers["Age"]) >= 2
    too_old = chat(server, "cached", text, cache_control="max-age=1")
    assert too_old.headers["x-aiproxy-cache"] == "miss"
    assert len(calls(fake, text)) == 2


def test_sampled_chats_are_cached_only_when_asked_for(server, fake):
    text = question()
    for _ in range(2):
        assert chat(server, "cached", text, temperature=0.7).headers["x-aiproxy-cache"] == "miss"
    assert len(calls(fake, text)) == 2
    # max-age on the request: the client accepts a repeat of one sample.
    chat(server, "cached", text, "max-age=3600", temperature=0.7)
    assert chat(server, "cached", text, "max-age=3600", temperature=0.7).headers["x-aiproxy-cache"] == "hit"
    assert len(calls(fake, text)) == 3
    # Or its entry says so (cache_nondeterministic), for several choices too.
    many = question()
    first = chat(server, "sampled", many, n=2, temperature=1)
    assert chat(server, "sampled", many, n=2, temperature=1).body == first.body
    assert len(calls(fake, many)) == 1


def test_unfinished_and_failed_answers_are_not_kept(server, fake):
    cut = question()
    body = {
        "id": "chatcmpl-cut",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Half"}, "finish_reason": "length"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
    fake.enqueue(Reply(body=body), Reply(body=body), path="/chat/completions")
    for _ in range(2):
        assert chat(server, "cached", cut).headers["x-aiproxy-cache"] == "miss"
    assert len(calls(fake, cut)) == 2
    refused = question()
    fake.enqueue(Fail(400, "Refused on purpose."), Fail(400, "Refused on purpose."), path="/chat/completions")
    for _ in range(2):
        assert chat(server, "cached", refused).status == 400
    assert len(calls(fake, refused)) == 2


def test_an_answer_larger_than_max_answer_bytes_is_not_kept(server, fake):
    text = question()
    fake.enqueue(Reply(contents=["word " * 200]), Reply(contents=["word " * 200]), path="/chat/completions")
    for _ in range(2):
        assert chat(server, "small", text).headers["x-aiproxy-cache"] == "miss"
    assert len(calls(fake, text)) == 2
    short = question()
    chat(server, "small", short)
    assert chat(server, "small", short).headers["x-aiproxy-cache"] == "hit"


def test_a_cached_stream_replays_as_a_stream_the_official_client_reads(server, fake):
    text = question()
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key_of("cached"), max_retries=0, timeout=20)
    with client as sdk:

        def streamed() -> tuple[str, str, list]:
            raw = sdk.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": text}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(raw.parse())
            said = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return raw.headers["x-aiproxy-cache"], said, [c.model_dump() for c in chunks]

        first = streamed()
        again = streamed()
    assert first[0] == "miss" and again[0] == "hit"
    assert again[1] == first[1] and len(first[1]) > 0
    assert again[2] == first[2]  # every event, in order, usage included
    assert len(calls(fake, text)) == 1


def test_embeddings_moderations_and_unstored_responses_are_cached(server, fake):
    text = question()
    for path, body in (
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": text}),
        ("/v1/moderations", {"model": "omni-moderation-latest", "input": text}),
        ("/v1/responses", {"model": "gpt-4o-mini", "input": text, "store": False}),
    ):
        first = post(server, "cached", path, body)
        again = post(server, "cached", path, body)
        assert (first.headers["x-aiproxy-cache"], again.headers["x-aiproxy-cache"]) == ("miss", "hit"), path
        assert again.body == first.body
        assert len(calls(fake, text, path.removeprefix("/v1"))) == 1, path
    # A stored response lives on upstream: it is always asked for.
    stored = question()
    for _ in range(2):
        answer = post(server, "cached", "/v1/responses", {"model": "gpt-4o-mini", "input": stored})
        assert answer.status == 200 and "x-aiproxy-cache" not in answer.headers
    assert len(calls(fake, stored, "/responses")) == 2


def test_a_hit_costs_nothing_in_the_clients_limits_and_says_what_it_saved(server, fake):
    text = question()
    fake.enqueue(
        Reply(usage={"prompt_tokens": 1000, "completion_tokens": 1000, "total_tokens": 2000}),
        path="/chat/completions",
    )
    headers = {"Authorization": f"Bearer {key_of('metered')}"}
    first = chat(server, "metered", text)
    after_miss = json.loads(fetch(server.url + "/v1/limits", headers=headers).body)["usage"]
    for _ in range(3):
        assert chat(server, "metered", text).headers["x-aiproxy-cache"] == "hit"
    after_hits = json.loads(fetch(server.url + "/v1/limits", headers=headers).body)["usage"]
    assert after_miss["spent_usd_today"] == pytest.approx(0.02)  # 2,000 tokens at $10 a million
    assert after_hits["spent_usd_today"] == after_miss["spent_usd_today"]
    assert after_hits["tokens_last_minute"] == after_miss["tokens_last_minute"]
    assert after_hits["requests_last_minute"] == after_miss["requests_last_minute"] + 3  # rpm counts hits
    assert first.status == 200

    def all_written() -> bool:  # the access lines are written once the answers have gone out
        lines = server.log_records()
        return len([r for r in lines if r.get("client") == "metered" and r.get("CacheHits") == 1]) >= 3

    wait_until(all_written, timeout=5)
    records = server.log_records()
    hits = [r for r in records if r.get("message", "").startswith("usage") and r.get("cache") == "hit"]
    mine = [r for r in hits if r.get("client") == "metered"]
    assert len(mine) == 3
    assert all(r["cost_usd"] == 0 and r["saved_usd"] == pytest.approx(0.02) for r in mine)
    assert all(r["saved_tokens"] == 2000 and r["total_tokens"] == 0 for r in mine)
    emf = [r for r in records if r.get("client") == "metered" and r.get("CacheHits") == 1]
    assert len(emf) == 3 and all(r["SavedUSD"] == pytest.approx(0.02) for r in emf)
    assert "CostUSD" not in emf[0] and "PromptTokens" not in emf[0]


def test_assessment_is_cached(server, fake):
    text = question()
    fields = {
        "code": f"print('{text}')",
        "prompt": "Write a program.",
        "rubric": "Key Concept,Extensive Evidence\nVariables,Uses variables",
        "num-responses": 1,
    }
    fake.enqueue(
        Reply(contents=["Key Concept\tObservations\tGrade\tReason\nVariables\tSeen\tExtensive Evidence\tOk"]),
        path="/chat/completions",
    )
    first = post(server, "sampled", "/assessment", fields)  # temperature 0.2: its entry accepts samples
    again = post(server, "sampled", "/assessment", {**dict(reversed(list(fields.items())))})
    assert first.status == 200, first.body
    assert (first.headers["x-aiproxy-cache"], again.headers["x-aiproxy-cache"]) == ("miss", "hit")
    assert again.body == first.body
    assert len(calls(fake, text)) == 1


SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "sample"
GRADED = "Key Concept\tObservations\tGrade\tReason\n" + "".join(
    f"{concept}\tSeen.\tConvincing Evidence\tAs the rubric says.\n"
    for concept in ("Variables", "Conditionals", "Functions", "User Input")
)


def test_the_lab_re_runs_a_graded_dataset_through_the_proxy_at_no_cost(server, fake, tmp_path):
    """`make evaluate` against a deployment: the lab's provider is the proxy (OPENAI_BASE_URL), its
    key a client key whose entry caches sampled answers; its own disk cache is off (--no-cache)."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env |= {
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "OPENAI_BASE_URL": server.url + "/v1",
        "OPENAI_API_KEY": key_of("sampled"),
        "AIPROXY_UPSTREAM_RETRIES": "0",
    }
    fake.responder = lambda request: Reply(contents=[GRADED])
    before = len(fake.requests_to("/chat/completions"))
    try:
        runs = [
            subprocess.run(
                [sys.executable, "-m", "lab.evaluate", str(SAMPLE), "--no-cache", "--output", f"run{n}"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            for n in (1, 2)
        ]
    finally:
        fake.responder = None
    graded = len(fake.requests_to("/chat/completions")) - before
    assert graded == 12, runs[0].stderr  # the sample's 12 programs, asked once over both runs
    first, second = (json.loads((tmp_path / f"run{n}" / "summary.json").read_text()) for n in (1, 2))
    assert second["overall"] == first["overall"]


def store_reads(store: RedisServer) -> int:
    """The read events the store has processed: one a round trip (a pipelined write is one)."""
    import redis

    client = redis.Redis.from_url(store.url, password=STORE_PASSWORD)
    try:
        return int(client.info("stats")["total_reads_processed"])
    finally:
        client.close()


def test_a_hit_waits_for_one_round_trip_to_the_store_its_entry_read_sent_with_the_admission(server, store):
    text = question()
    for _ in range(3):  # kept, then hits on both workers: the store's scripts are loaded
        chat(server, "cached", text)
    hits = 20
    before = store_reads(store)
    answers = [chat(server, "cached", text) for _ in range(hits)]
    time.sleep(0.3)  # each hit's settle, sent once its answer has gone out
    reads = store_reads(store) - before
    assert {a.headers["x-aiproxy-cache"] for a in answers} == {"hit"}
    assert [content(a) for a in answers] == [content(answers[0])] * hits
    # A hit: its admission and its entry read in one write (one read event), then its settle; the
    # entry read on its own would make three a hit. About ten more: the INFO calls' connections
    # (HELLO, INFO), a lease renewal.
    assert reads < 2.5 * hits + 8, reads


def test_with_the_store_stopped_requests_are_answered_as_misses(server, fake, store):
    text = question()
    chat(server, "cached", text)
    store.stop()
    try:
        answers = [chat(server, "cached", text) for _ in range(4)]
        assert [a.status for a in answers] == [200] * 4
        assert {a.headers["x-aiproxy-cache"] for a in answers} == {"miss"}
        assert len(calls(fake, text)) == 5
    finally:
        store.start()

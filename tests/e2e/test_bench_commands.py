"""The benchmark commands and tools run end to end (tiny loads: they check the tools work, not the
figures)."""

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

import openai
import pytest

from bench import nginx, wrk
from testbed.server import ROOT


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_bench_latency_scenario_prints_its_table_and_verdict():
    out = run("bench", "--scenario", "latency", "--requests", "20", "--workers", "1")
    rows = {m[1]: m[2] for m in re.finditer(r"^\| latency \| (direct|proxy) \| 1 \| (\d+) \|", out, re.M)}
    assert rows == {"direct": "20", "proxy": "20"}
    # The last column: the proxy's CPU time per request, measured on the proxy's rows only.
    cpu = dict(re.findall(r"^\| latency \| (direct|proxy) \|.* \| ([-\d.]+) \|$", out, re.M))
    assert cpu["direct"] == "-"
    assert 0 < float(cpu["proxy"]) < 100
    verdict = r"^(met   |MISSED)  added latency p50 under 2 ms for one client: \d+\.\d\d ms$"
    assert re.search(verdict, out, re.M)


def test_bench_end_users_measures_what_a_token_adds():
    out = run("bench.end_users", "--rounds", "1", "--requests", "20")
    verdict = r"^(met   |MISSED)  a token request adds under 0.3 ms at the median: -?\d+\.\d{3} ms$"
    assert re.search(verdict, out, re.M), out


def test_bench_layers_measures_every_layer_of_the_stack():
    out = run("bench.layers", "--rounds", "1", "--requests", "20", "--delay", "0")
    rows = re.findall(
        r"^\| (\w+) \| -?\d+\.\d\d \| ([\w-]+) \| [+-]\d+\.\d\d \| (\d+\.\d\d) \| [+-]\d+\.\d\d \|",
        out,
        re.M,
    )
    assert [(layer, base) for layer, base, _ in rows] == [
        ("relay", "-"),
        ("gunicorn", "relay"),
        ("pool", "gunicorn"),
        ("flask", "pool"),  # for comparison: the relay routes skip Flask
        ("proxy", "pool"),
    ]
    # Every layer's server was busy relaying: some CPU time per request, under a second.
    assert all(0 < float(cpu) < 1000 for _, _, cpu in rows), rows


needs_nginx = pytest.mark.skipif(not nginx.available(), reason=f"{nginx.NGINX} is not installed")
needs_wrk = pytest.mark.skipif(not wrk.available(), reason=f"{wrk.WRK} is not installed")
CHAT = [{"role": "user", "content": "Write one sentence about the sea."}]


@needs_nginx
def test_nginx_upstream_answers_chats_and_streams_the_openai_client_parses():
    with nginx.nginx_upstream() as url:
        client = openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0, timeout=10)
        chat = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
        assert chat.choices[0].message.content == "The sea is calm tonight."
        assert chat.usage.total_tokens == 18

        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=CHAT, stream=True, stream_options={"include_usage": True}
            )
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            == chat.choices[0].message.content
        )
        assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 18

        # On the wire: six events, the last [DONE]; the choice is made by the body, not the path.
        kind, text = post(url + "/chat/completions", {"model": "m", "messages": CHAT, "stream": True})
        events = text.split("\n\n")
        assert kind == "text/event-stream"
        assert len(events) == 7 and events[-1] == "" and events[-2] == "data: [DONE]"
        assert post(url + "/chat/completions", {"stream": False})[0] == "application/json"
        with pytest.raises(urllib.error.HTTPError) as missing:
            post(url + "/embeddings", {})
        assert missing.value.code == 404 and "error" in json.loads(missing.value.read())


def post(url: str, body: dict) -> tuple[str, str]:
    """POST `body` as JSON; the answer's content type and text."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.headers["Content-Type"], answer.read().decode()


@needs_nginx
@needs_wrk
def test_wrk_counts_answers_that_are_not_2xx_and_streams_cut_short():
    whole = json.dumps({"model": "m", "messages": CHAT}).encode()
    with nginx.nginx_upstream() as url:
        good = wrk.run_wrk(url + "/chat/completions", whole, clients=2, duration=1)
        # The whole chat's answer read as a stream has no [DONE]; an unknown path answers 404.
        cut = wrk.run_wrk(url + "/chat/completions", whole, clients=2, stream=True, duration=1)
        missing = wrk.run_wrk(url + "/embeddings", whole, clients=2, duration=1)
    assert good.done > 100 and good.error_count == 0 and 1 <= good.elapsed < 3
    assert cut.done == 0 and set(cut.errors) == {"stream ended without [DONE]"} and cut.error_count > 100
    assert missing.done == 0 and set(missing.errors) == {"not 2xx"}


def point_rows(out: str) -> dict[tuple[str, str], list[str]]:
    """(scenario, path) -> the row's cells, for the four points."""
    rows = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] in ("chat-1", "chat-50", "stream-1", "stream-50", "key-1") and len(cells) == 13:
            rows[cells[0], cells[1]] = cells
    return rows


@needs_nginx
@needs_wrk
def test_bench_points_through_nginx_and_wrk_print_their_table_without_errors():
    out = run("bench", "--point-seconds", "1", "--workers", "1")
    rows = point_rows(out)
    assert sorted(rows) == sorted(
        (point, path)
        for point in ("chat-1", "chat-50", "stream-1", "stream-50", "key-1")
        for path in ("direct", "proxy")
    )
    for (_, path), cells in rows.items():
        assert int(cells[3]) > 0 and float(cells[4]) > 0, cells  # requests and req/s
        assert cells[11] == "0", cells  # errors
        assert (cells[8] == "-") == (path == "direct"), cells  # added p50 on the proxy's rows
    pss = re.search(r"^Proxy PSS while serving .*target < 100 MB\): proxy (\d+) MiB \((\d+) MB\)$", out, re.M)
    assert pss and 10 < int(pss[1]) < 1000
    assert re.search(r"^(met   |MISSED)  proxy PSS while serving under 100 MB: ", out, re.M)
    assert "met     stream-50: no errors (proxy 0)" in out


def worktrees() -> str:
    return subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout


def test_bench_baseline_runs_both_proxies_side_by_side_and_removes_its_worktree():
    before = worktrees()
    out = run(
        "bench", "--baseline", "HEAD", "--scenario", "chat-1", "--scenario", "key-1", "--point-seconds", "1",
        "--workers", "1",
    )  # fmt: skip
    assert worktrees() == before
    rows = point_rows(out)
    assert sorted(rows) == sorted(
        (point, path) for point in ("chat-1", "key-1") for path in ("baseline", "direct", "proxy")
    )
    assert all(cells[11] == "0" for cells in rows.values()), rows  # the load's key is the key-1 client's
    for point in ("chat-1", "key-1"):
        figures = re.findall(rf"^\| {point} \| ([\w/ ]+) \| [\d.,]+ \| [\d.,]+ \| [+-][\d.,]+", out, re.M)
        assert figures == ["req/s", "p50 ms", "p99 ms", "added p50 ms", "errors", "CPU ms/req"]
    assert re.search(
        r"^(met   |MISSED)  key-1: a request with a client key adds at most the baseline's", out, re.M
    )
    assert re.search(r"proxy \d+ MiB \(\d+ MB\), baseline \d+ MiB \(\d+ MB\)$", out, re.M)


def test_bench_refuses_a_baseline_that_is_no_commit():
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--baseline", "no-such-commit-0123", "--scenario", "chat-1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "--baseline: 'no-such-commit-0123' is not a commit" in done.stderr

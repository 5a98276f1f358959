"""The benchmark's load runs (bench/load.py), against the fake upstream on 127.0.0.1.

Two paths of one fake stand in for "direct" and "proxy", so the order the fake saw its requests
in is the order the benchmark sent them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.load import measure

BODY = b'{"model": "gpt-4o-mini", "input": "hi", "messages": [{"role": "user", "content": "hi"}]}'


@dataclass
class Scenario:
    name: str = "latency"
    clients: int = 1
    duration: float | None = None
    count: int | None = None
    rounds: int = 1


def targets(fake) -> dict:
    return {
        "direct": (fake.url + "/chat/completions", BODY, False),
        "proxy": (fake.url + "/embeddings", BODY, False),
    }


def runs_in_order(fake) -> list[tuple[str, int]]:
    """The paths the fake was asked for, as (path, requests in a row), warm-ups included."""
    runs: list[tuple[str, int]] = []
    for request in fake.requests:
        name = "direct" if request.path.endswith("/chat/completions") else "proxy"
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1] + 1)
        else:
            runs.append((name, 1))
    return runs


def test_rounds_alternate_the_paths_and_split_the_requests(fake_openai):
    results = measure(Scenario(count=10, rounds=3), targets(fake_openai))

    warm_up = [("direct", 3), ("proxy", 3)]
    # 10 requests in 3 rounds: 4, 3, 3; the path that ran second in a round runs first in the next.
    rounds = [("direct", 4), ("proxy", 4 + 3), ("direct", 3 + 3), ("proxy", 3)]
    assert runs_in_order(fake_openai) == warm_up + rounds
    assert {path: result.done for path, result in results.items()} == {"direct": 10, "proxy": 10}
    assert all(result.error_count == 0 and result.elapsed > 0 for result in results.values())


def test_one_round_runs_each_path_once(fake_openai):
    results = measure(Scenario(count=5), targets(fake_openai))

    assert runs_in_order(fake_openai) == [("direct", 3), ("proxy", 3), ("direct", 5), ("proxy", 5)]
    assert [result.done for result in results.values()] == [5, 5]


def test_a_timed_scenario_splits_its_duration_into_rounds(fake_openai):
    results = measure(Scenario(duration=0.4, rounds=2), targets(fake_openai))

    # Warm-ups, then 0.2 s a path a round, the path that ran second in a round first in the next.
    order = [name for name, _ in runs_in_order(fake_openai)]
    assert order == ["direct", "proxy", "direct", "proxy", "direct"]  # proxy's two runs in a row merge
    assert all(0.4 <= result.elapsed < 2 for result in results.values())


def test_never_more_rounds_than_requests(fake_openai):
    results = measure(Scenario(count=2, rounds=5), targets(fake_openai))

    assert runs_in_order(fake_openai)[2:] == [("direct", 1), ("proxy", 2), ("direct", 1)]
    assert [result.done for result in results.values()] == [2, 2]


def test_errors_of_every_round_are_counted(fake_openai):
    missing = {
        "direct": (fake_openai.url + "/chat/completions", BODY, False),
        "proxy": (fake_openai.url + "/no-such-route", BODY, False),
    }
    results = measure(Scenario(count=4, rounds=2), missing)

    assert results["direct"].done == 4
    assert results["proxy"].done == 0
    assert results["proxy"].errors == {"HTTP 404": 4}


def test_a_server_clock_is_read_around_its_own_paths_runs_only(fake_openai):
    # The "clock" counts the requests the fake has answered: what it advances by is exactly what
    # the proxy path's runs sent, not the warm-ups and not the direct runs between them.
    results = measure(
        Scenario(count=10, rounds=3),
        targets(fake_openai),
        cpu_clocks={"proxy": lambda: float(len(fake_openai.requests))},
    )

    assert results["proxy"].server_cpu == 10
    assert results["proxy"].cpu_per_request == 1.0
    assert results["direct"].server_cpu is None
    assert results["direct"].cpu_per_request is None

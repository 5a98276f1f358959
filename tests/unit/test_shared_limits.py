"""The shared limiter against a real Redis server process: the same limits as the per-process one,
counted once for every limiter (process) that shares the store, and what happens when it fails."""

from __future__ import annotations

import logging

import pytest

from service.core.request_state import Usage
from service.governance.limits import LimitExceeded, Limits, LocalLimiter
from service.governance.shared_limits import SharedLimiter, keys
from service.store.client import store_client
from testbed.redis_server import RedisServer
from tests.support.clock import Clock
from tests.support.waiting import wait_until

NOON = 1_790_000_000.0  # a fixed time of day, far from midnight


@pytest.fixture(scope="module")
def store():
    with RedisServer(password="store-password-for-tests") as server:
        yield server


@pytest.fixture
def clock():
    return Clock(NOON)


def limiter_for(store: RedisServer, clock: Clock, **options) -> SharedLimiter:
    """A limiter on `store`; it settles before `settle` returns unless `background_settles=True`
    (the server's way), so a test sees each settle at once."""
    client = store_client(store.url, lambda: store.password, cluster=store.cluster)
    options.setdefault("background_settles", False)
    return SharedLimiter(client, LocalLimiter(clock=clock), clock=clock, lease_seconds=30, **options)


@pytest.fixture
def two(store, clock, request):
    """Two limiters sharing the store, as two server processes do; a client name of this test's own."""
    first, second = limiter_for(store, clock), limiter_for(store, clock)
    return first, second, request.node.name[:60].replace("[", "-").replace("]", "")


def used(tokens: int = 0, cost: float | None = None) -> Usage:
    return Usage(prompt_tokens=tokens, cost_usd=cost)


def test_the_request_window_is_one_for_every_process(two, clock):
    first, second, client = two
    limits = Limits(rpm=3, max_concurrent=100)
    for limiter in (first, second, first):
        limiter.settle(limiter.admit(client, limits, 0), used())
        clock.now += 10
    with pytest.raises(LimitExceeded) as refused:
        second.admit(client, limits, 0)
    # The first request leaves the window 60 s after it came, 30 s from now.
    assert refused.value.headers == {"Retry-After": "30"}
    assert "3 requests a minute" in refused.value.message
    clock.now += 30
    second.admit(client, limits, 0)


def test_admission_reports_what_is_left_for_the_headers(two, clock):
    first, second, client = two
    limits = Limits(rpm=10, max_concurrent=100, tpm=1000)
    first.admit(client, limits, 100)
    clock.now += 5
    admission = second.admit(client, limits, 200)
    headers = dict(admission.headers())
    assert headers["x-ratelimit-limit-requests"] == "10"
    assert headers["x-ratelimit-remaining-requests"] == "8"
    assert headers["x-ratelimit-reset-requests"] == "55s"
    assert headers["x-ratelimit-remaining-tokens"] == "700"
    assert headers["x-ratelimit-reset-tokens"] == "55s"


def test_in_flight_slots_are_shared_and_freed_once(two):
    first, second, client = two
    limits = Limits(rpm=100, max_concurrent=2)
    held = first.admit(client, limits, 0)
    second.admit(client, limits, 0)
    with pytest.raises(LimitExceeded) as refused:
        first.admit(client, limits, 0)
    assert "2 requests in flight" in refused.value.message
    first.settle(held, used())
    first.settle(held, used())  # settling twice frees one slot only
    second.admit(client, limits, 0)
    with pytest.raises(LimitExceeded):
        first.admit(client, limits, 0)


def test_settles_go_in_the_background_unless_the_next_admission_needs_them(store, clock, request):
    client = request.node.name[:60]
    first = limiter_for(store, clock, background_settles=True)
    second = limiter_for(store, clock)
    limits = Limits(rpm=100, max_concurrent=50, tpm=100_000)
    held = [first.admit(client, limits, 1000) for _ in range(40)]
    for admission in held:
        first.settle(admission, used(tokens=10))  # returns without waiting for the store's reply
    # Every slot free, every estimate replaced.
    wait_until(lambda: second.usage(client, limits)["in_flight"] == 0, timeout=5)
    assert second.usage(client, limits)["tokens_last_minute"] == 40 * 10
    # One request after another at the client's max_concurrent: settling the last slot waits for
    # the store's reply, so the next admission, on another connection, always finds it free.
    one = Limits(rpm=1000, max_concurrent=1)
    for _ in range(50):
        first.settle(first.admit(client + "-one", one, 0), used())
    # A client with a budget: its cost is in the store when settle returns.
    budget = Limits(rpm=100, max_concurrent=50, budget_usd_per_day=1.0)
    first.settle(first.admit(client + "-budget", budget, 0), used(cost=0.5))
    assert second.usage(client + "-budget", budget)["spent_usd_today"] == 0.5


def test_a_store_that_lost_its_scripts_is_given_them_again(two, store):
    first, second, client = two
    limits = Limits(rpm=100, max_concurrent=1)
    first.settle(first.admit(client, limits, 0), used())
    store_client(store.url, lambda: store.password).script_flush()  # as after a restart or failover
    held = first.admit(client, limits, 0)
    assert not held.local  # counted in the store, not around it
    with pytest.raises(LimitExceeded):
        second.admit(client, limits, 0)
    first.settle(held, used())
    second.admit(client, limits, 0)


def test_connections_the_store_closed_while_idle_are_replaced_without_an_outage(
    store, clock, request, caplog
):
    client = request.node.name[:60]
    first = limiter_for(store, clock, background_settles=True)
    second = limiter_for(store, clock)
    limits = Limits(rpm=100, max_concurrent=5)  # room to spare: settles go in the background
    first.settle(first.admit(client, limits, 0), used())
    wait_until(lambda: second.usage(client, limits)["in_flight"] == 0, timeout=5)

    def close_every_connection():  # as a restart, a failover or an idle timeout does
        store_client(store.url, lambda: store.password).client_kill_filter(_type="normal", skipme=True)

    close_every_connection()
    held = first.admit(client, limits, 0)
    assert not held.local  # counted in the store, on a new connection: no outage
    assert second.usage(client, limits)["in_flight"] == 1  # (its own connections were closed too)
    close_every_connection()
    first.settle(held, used())  # sent on a closed connection: its reply, read later, says so
    wait_until(lambda: second.usage(client, limits)["in_flight"] == 0, timeout=5)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_the_slots_of_a_process_that_stops_renewing_come_back_after_the_lease(two, clock):
    first, second, client = two
    limits = Limits(rpm=100, max_concurrent=1)
    first.admit(client, limits, 0)  # its process is killed: nothing settles or renews it
    clock.now += 29
    with pytest.raises(LimitExceeded):
        second.admit(client, limits, 0)
    clock.now += 2  # past the 30 s lease
    second.admit(client, limits, 0)


def test_a_live_lease_is_renewed_and_outlives_its_first_term(two, clock):
    first, second, client = two
    limits = Limits(rpm=100, max_concurrent=1)
    first.admit(client, limits, 0)  # a stream of several minutes
    for _ in range(5):
        clock.now += 20
        first.renew()
        with pytest.raises(LimitExceeded):
            second.admit(client, limits, 0)


def test_tokens_reserved_are_replaced_by_the_tokens_used(two, clock):
    first, second, client = two
    limits = Limits(rpm=100, max_concurrent=100, tpm=1000)
    big = first.admit(client, limits, 900)
    with pytest.raises(LimitExceeded) as refused:
        second.admit(client, limits, 200)  # 900 reserved + 200 asked > 1000
    assert refused.value.code == "tokens_exceeded"
    first.settle(big, used(tokens=50))  # it used far less than it could have
    for _ in range(4):
        second.settle(second.admit(client, limits, 200), used(tokens=200))
    with pytest.raises(LimitExceeded) as refused:
        second.admit(client, limits, 200)  # 50 + 4 x 200 = 850 used; 200 more do not fit
    assert refused.value.retry_after == 60
    clock.now += 61
    second.admit(client, limits, 900)


def test_a_request_larger_than_the_whole_tpm_says_so(two):
    first, _, client = two
    with pytest.raises(LimitExceeded) as refused:
        first.admit(client, Limits(rpm=100, max_concurrent=100, tpm=500), 800)
    assert "more than client" in refused.value.message and "max_tokens" in refused.value.message


def test_a_budget_stops_spending_within_one_request_and_says_when_it_resets(two, clock):
    first, second, client = two
    limits = Limits(rpm=100, max_concurrent=100, budget_usd_per_day=0.01)
    for limiter in (first, second, first):
        limiter.settle(limiter.admit(client, limits, 0), used(cost=0.004))  # the third crosses 0.01
    with pytest.raises(LimitExceeded) as refused:
        second.admit(client, limits, 0)
    assert refused.value.code == "budget_exceeded"
    assert "daily budget of $0.01" in refused.value.message and "UTC" in refused.value.message
    clock.now += 86400  # the next UTC day
    second.admit(client, limits, 0)


def test_a_monthly_budget_spans_days(two, clock):
    first, _, client = two
    limits = Limits(rpm=100, max_concurrent=100, budget_usd_per_month=1.0)
    first.settle(first.admit(client, limits, 0), used(cost=1.5))
    clock.now += 86400
    with pytest.raises(LimitExceeded) as refused:
        first.admit(client, limits, 0)
    assert "monthly budget" in refused.value.message


def test_usage_reads_what_every_process_counted(two):
    first, second, client = two
    limits = Limits(rpm=100, max_concurrent=100, tpm=10_000)
    first.settle(first.admit(client, limits, 100), used(tokens=40, cost=0.5))
    second.admit(client, limits, 300)
    assert first.usage(client, limits) == {
        "requests_last_minute": 2,
        "tokens_last_minute": 340,
        "in_flight": 1,
        "spent_usd_today": 0.5,
        "spent_usd_this_month": 0.5,
    }


def test_every_key_of_a_client_shares_one_hash_tag():
    names = keys("web-app", NOON)
    assert all(name.startswith("aiproxy:{web-app}:") for name in names)
    assert len(set(names)) == len(names)


def test_a_store_that_fails_is_counted_around_in_open_mode_and_comes_back(clock, caplog):
    with RedisServer() as store:
        limiter = limiter_for(store, clock)
        limits = Limits(rpm=2, max_concurrent=100)
        limiter.admit("outage", limits, 0)
        store.stop()
        with caplog.at_level(logging.INFO, logger="service.governance.shared_limits"):
            local = limiter.admit("outage", limits, 0)  # counted in this process meanwhile
            assert local.local
            limiter.admit("outage", limits, 0)
            with pytest.raises(LimitExceeded):  # the local count holds too
                limiter.admit("outage", limits, 0)
            store.start()
            clock.now += 61
            import time

            time.sleep(1.1)  # the store is tried again after a second
            back = limiter.admit("outage", limits, 0)
        assert not back.local
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "counting per process" in errors[0].getMessage()
        assert any("shared again" in r.getMessage() for r in caplog.records)


def test_a_store_that_fails_refuses_requests_in_closed_mode(clock):
    with RedisServer() as store:
        limiter = limiter_for(store, clock, on_store_error="closed")
        store.stop()
        with pytest.raises(Exception) as refused:
            limiter.admit("closed", Limits(rpm=2, max_concurrent=100), 0)
    assert refused.value.status == 503
    assert refused.value.code == "limits_unavailable"


def test_every_script_runs_on_a_clustered_store(clock):
    # A cluster refuses a command whose keys are in different slots: the hash tags keep each
    # script's keys in one slot, and the lease renewal groups its keys by node.
    with RedisServer(password="cluster-password", cluster=True) as store:
        first, second = limiter_for(store, clock), limiter_for(store, clock, background_settles=True)
        limits = Limits(rpm=3, max_concurrent=1, tpm=1000, budget_usd_per_day=1.0)
        held = first.admit("school-a", limits, 100)
        with pytest.raises(LimitExceeded):
            second.admit("school-a", limits, 100)
        second.admit("school-b", limits, 100)  # another client: another slot
        first.renew()
        second.renew()
        first.settle(held, used(tokens=40, cost=0.25))
        assert second.usage("school-a", limits)["spent_usd_today"] == 0.25
        assert not second.admit("school-a", limits, 100).local  # counted in the store, not around it
        # Background settles of clients in different slots, pipelined together.
        no_budget = Limits(rpm=3, max_concurrent=2, tpm=1000)  # room to spare: in the background
        held = [second.admit(school, no_budget, 100) for school in ("school-c", "school-d")]
        for admission in held:
            second.settle(admission, used(tokens=7))
        for school in ("school-c", "school-d"):
            wait_until(lambda school=school: first.usage(school, no_budget)["in_flight"] == 0, timeout=5)
            assert first.usage(school, no_budget)["tokens_last_minute"] == 7


def student(name: str, limits=None, **more):
    from service.governance.end_users import EndUser

    return EndUser(hashed=f"hash-of-{name}", limits=limits, **more)


def test_an_end_users_limits_are_shared_and_admitted_with_the_clients(two, clock):
    from service.governance.end_user_limits import EndUserLimits

    first, second, client = two
    limits, per_student = Limits(rpm=100, max_concurrent=100, tpm=10_000), EndUserLimits(rpm=2, tpm=500)
    admitted = first.admit(client, limits, 100, student("a", per_student))
    assert admitted.end_user is not None and admitted.end_user.remaining_tokens == 400
    first.settle(admitted, used(tokens=50))
    second.settle(second.admit(client, limits, 100, student("a", per_student)), used(tokens=50))
    with pytest.raises(LimitExceeded) as refused:
        first.admit(client, limits, 100, student("a", per_student))
    assert refused.value.code == "end_user_rate_limited"
    first.admit(client, limits, 100, student("b", per_student))
    assert second.end_user_usage(client, student("a", per_student))["tokens_last_minute"] == 100
    assert second.usage(client, limits)["requests_last_minute"] == 3


def test_an_end_users_tokens_of_the_day_and_budget_are_shared(two, clock):
    from service.governance.end_user_limits import EndUserLimits

    first, second, client = two
    limits = Limits(rpm=100, max_concurrent=100)
    per_day = EndUserLimits(tokens_per_day=100, budget_usd_per_month=0.5, max_concurrent=1)
    held = first.admit(client, limits, 0, student("a", per_day))
    with pytest.raises(LimitExceeded, match="in flight"):
        second.admit(client, limits, 0, student("a", per_day))
    first.settle(held, used(tokens=150, cost=0.1))
    with pytest.raises(LimitExceeded, match="tokens for today"):
        second.admit(client, limits, 0, student("a", per_day))
    second.settle(second.admit(client, limits, 0, student("b", per_day)), used(cost=0.5))
    with pytest.raises(LimitExceeded) as refused:
        first.admit(client, limits, 0, student("b", per_day))
    assert refused.value.code == "end_user_budget_exceeded"


def test_a_token_id_used_once_is_remembered_in_the_store_until_it_expires(two, clock, store):
    from service.core.errors import Unauthenticated
    from service.governance.shared_limits import seen_key

    first, second, client = two
    limits = Limits(rpm=100, max_concurrent=100)
    once = student("a", token_id="token-7", expires=clock.now + 60, reject_replay=True)
    first.admit(client, limits, 0, once)
    with pytest.raises(Unauthenticated):
        second.admit(client, limits, 0, once)
    ttl = store_client(store.url, lambda: store.password).pttl(seen_key(client, "token-7"))
    assert 50_000 < ttl <= 60_000


def test_end_user_scripts_run_on_a_clustered_store(clock):
    from service.governance.end_user_limits import EndUserLimits

    with RedisServer(password="cluster-password", cluster=True) as store:
        first = limiter_for(store, clock)
        limits = Limits(rpm=3, max_concurrent=2, tpm=1000)
        once = student("a", EndUserLimits(rpm=1), token_id="t", expires=clock.now + 60, reject_replay=True)
        held = first.admit("school-a", limits, 100, once)
        assert not held.local
        first.renew()
        first.settle(held, used(tokens=40))
        assert first.end_user_usage("school-a", once)["requests_last_minute"] == 1

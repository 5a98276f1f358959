"""Per-client limits: a sliding one-minute window of requests, and requests in flight."""

import pytest

from service.core.request_state import Usage
from service.governance.limits import LimitExceeded, Limits, LocalLimiter, PerMinute
from tests.support.clock import Clock


@pytest.fixture
def clock():
    return Clock(5000.0)


@pytest.fixture
def limiter(clock):
    return LocalLimiter(clock=clock)


def acquire(limiter: LocalLimiter, client: str, limits: Limits):
    """Admit one request of `client`; the function that settles it (frees its slot)."""
    admission = limiter.admit(client, limits, 0)
    return lambda: limiter.settle(admission, Usage())


def test_over_rpm_in_a_minute_is_refused_until_the_oldest_request_leaves_the_window(limiter, clock):
    limits = Limits(rpm=3, max_concurrent=100)
    for _ in range(2):
        acquire(limiter, "web", limits)()
    clock.now += 20
    acquire(limiter, "web", limits)()
    with pytest.raises(LimitExceeded) as refused:
        acquire(limiter, "web", limits)
    # The first two requests leave the window 60 s after they came, 40 s from now.
    assert refused.value.status == 429
    assert refused.value.headers == {"Retry-After": "40"}
    assert "3 requests a minute" in refused.value.message
    clock.now += 39.5
    with pytest.raises(LimitExceeded):
        acquire(limiter, "web", limits)
    clock.now += 0.5
    acquire(limiter, "web", limits)()
    acquire(limiter, "web", limits)()
    with pytest.raises(LimitExceeded):
        acquire(limiter, "web", limits)  # the request at +20 s is still in the window


def test_refused_requests_do_not_count(limiter, clock):
    limits = Limits(rpm=1, max_concurrent=100)
    acquire(limiter, "web", limits)()
    for _ in range(5):
        clock.now += 10
        with pytest.raises(LimitExceeded):
            acquire(limiter, "web", limits)
    clock.now += 10.0  # 60 s after the one admitted request
    acquire(limiter, "web", limits)()


def test_retry_after_is_at_least_one_second(limiter, clock):
    limits = Limits(rpm=1, max_concurrent=100)
    acquire(limiter, "web", limits)()
    clock.now += 59.9
    with pytest.raises(LimitExceeded) as refused:
        acquire(limiter, "web", limits)
    assert refused.value.retry_after == 1


def test_in_flight_requests_are_limited_and_released_once(limiter):
    limits = Limits(rpm=1000, max_concurrent=2)
    first = acquire(limiter, "web", limits)
    acquire(limiter, "web", limits)
    with pytest.raises(LimitExceeded) as refused:
        acquire(limiter, "web", limits)
    assert refused.value.headers == {"Retry-After": "1"}
    assert "2 requests in flight" in refused.value.message
    first()
    first()  # a second release of the same request frees nothing more
    assert limiter.in_flight("web") == 1
    acquire(limiter, "web", limits)
    with pytest.raises(LimitExceeded):
        acquire(limiter, "web", limits)


def test_clients_do_not_affect_each_other(limiter):
    tight = Limits(rpm=1, max_concurrent=1)
    acquire(limiter, "web", tight)
    with pytest.raises(LimitExceeded):
        acquire(limiter, "web", tight)
    acquire(limiter, "batch", tight)
    assert limiter.in_flight("web") == 1
    assert limiter.in_flight("batch") == 1


def test_a_lower_limit_from_a_reloaded_store_applies_at_once(limiter, clock):
    for _ in range(5):
        acquire(limiter, "web", Limits(rpm=10, max_concurrent=100))()
        clock.now += 1
    with pytest.raises(LimitExceeded) as refused:
        acquire(limiter, "web", Limits(rpm=2, max_concurrent=100))
    # Room for one more opens when only one request is left in the window: after the 4th leaves.
    assert refused.value.retry_after == 58  # the 4th came at +3 s: 63 - 5


def test_tokens_per_minute_count_estimates_until_the_tokens_used_replace_them(limiter, clock):
    limits = Limits(rpm=10_000, max_concurrent=10_000, tpm=1000)
    big = limiter.admit("web", limits, 900)
    assert (big.remaining_tokens, big.reset_tokens) == (100, 60)
    with pytest.raises(LimitExceeded) as refused:
        limiter.admit("web", limits, 200)  # 900 reserved + 200 asked > 1000
    assert refused.value.code == "tokens_exceeded"
    limiter.settle(big, Usage(prompt_tokens=40, completion_tokens=10))  # far less than it could have
    clock.now += 20
    for _ in range(4):
        limiter.settle(limiter.admit("web", limits, 200), Usage(prompt_tokens=200))
    assert limiter.usage("web", limits)["tokens_last_minute"] == 850
    with pytest.raises(LimitExceeded) as refused:
        limiter.admit("web", limits, 200)  # 850 used; 200 more do not fit
    # Room for it opens when the first request's 50 tokens leave the window, 40 s from now.
    assert refused.value.retry_after == 40
    clock.now += 40
    assert limiter.usage("web", limits)["tokens_last_minute"] == 800
    limiter.admit("web", limits, 200)


def test_a_busy_minute_is_counted_exactly(limiter, clock):
    # 50,000 requests in 50 s (each check adds up the minute's seconds, not its requests).
    limits = Limits(rpm=100_000, max_concurrent=100_000, tpm=10_000_000)
    for _ in range(50_000):
        limiter.settle(limiter.admit("web", limits, 100), Usage(prompt_tokens=50))
        clock.now += 0.001
    assert limiter.usage("web", limits)["tokens_last_minute"] == 50_000 * 50
    assert limiter.usage("web", limits)["requests_last_minute"] == 50_000
    clock.now += 60
    assert limiter.usage("web", limits)["tokens_last_minute"] == 0


def test_a_request_is_settled_before_its_answer_only_when_that_can_change_the_next_admission(limiter):
    roomy = Limits(rpm=100, max_concurrent=3, tpm=10_000)
    assert not limiter.admit("web", roomy, 100).settles_first  # room for another of its kind
    assert not limiter.admit("web", roomy, 100).settles_first
    assert limiter.admit("web", roomy, 100).settles_first  # its client's last slot
    tight = Limits(rpm=100, max_concurrent=100, tpm=1000)
    assert not limiter.admit("batch", tight, 400).settles_first  # 600 left: another 400 fits
    assert limiter.admit("batch", tight, 400).settles_first  # 200 left: the next needs the correction
    budget = Limits(rpm=100, max_concurrent=100, budget_usd_per_month=5.0)
    assert limiter.admit("school", budget, 0).settles_first  # its cost must count before its next


def test_a_count_per_minute_refuses_past_its_most_until_the_oldest_leaves(clock):
    reads = PerMinute(3, clock=clock)
    for _ in range(3):
        assert reads.take("web") == 0
        clock.now += 10
    assert reads.take("web") == 30  # the first read leaves the window 60 s after it
    assert reads.take("batch") == 0  # each client counts alone
    clock.now += 30
    assert reads.take("web") == 0
    assert reads.take("web") == 10


def student(name: str, limits, **more):
    from service.governance.end_users import EndUser

    return EndUser(hashed=f"hash-of-{name}", limits=limits, **more)


def test_an_end_user_over_their_rpm_is_refused_while_another_goes_on(limiter, clock):
    from service.governance.end_user_limits import EndUserLimits

    client, per_student = Limits(rpm=100, max_concurrent=100), EndUserLimits(rpm=2)
    for _ in range(2):
        limiter.settle(limiter.admit("web", client, 0, student("a", per_student)), Usage())
    with pytest.raises(LimitExceeded) as refused:
        limiter.admit("web", client, 0, student("a", per_student))
    assert refused.value.code == "end_user_rate_limited" and refused.value.retry_after == 60
    limiter.admit("web", client, 0, student("b", per_student))
    assert limiter.usage("web", client)["requests_last_minute"] == 3  # the refused one counts nowhere


def test_an_end_users_tokens_and_budget_for_the_day(limiter, clock):
    from service.governance.end_user_limits import EndUserLimits

    client = Limits(rpm=100, max_concurrent=100)
    per_day = EndUserLimits(tokens_per_day=100, budget_usd_per_day=1.0)
    limiter.settle(limiter.admit("web", client, 0, student("a", per_day)), Usage(prompt_tokens=120))
    with pytest.raises(LimitExceeded) as refused:
        limiter.admit("web", client, 0, student("a", per_day))
    assert refused.value.code == "end_user_rate_limited" and "tokens for today" in refused.value.message
    limiter.settle(limiter.admit("web", client, 0, student("b", per_day)), Usage(cost_usd=1.0))
    with pytest.raises(LimitExceeded) as refused:
        limiter.admit("web", client, 0, student("b", per_day))
    assert refused.value.code == "end_user_budget_exceeded"
    assert limiter.end_user_usage("web", student("b", per_day))["spent_usd_today"] == 1.0


def test_a_token_that_may_be_used_once_is_refused_the_second_time_until_it_expires(limiter, clock):
    from service.core.errors import Unauthenticated

    client = Limits(rpm=100, max_concurrent=100)
    once = student("a", None, token_id="t-1", expires=clock.now + 60, reject_replay=True)
    limiter.admit("web", client, 0, once)
    with pytest.raises(Unauthenticated):
        limiter.admit("web", client, 0, once)
    limiter.admit("other-client", client, 0, once)  # another client's token ids are its own

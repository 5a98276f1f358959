"""Client limits and budgets counted in Redis or Valkey, shared by every server process and task.

The same limits as `service.governance.limits.LocalLimiter`, with the same answers, counted once
for the whole fleet. Each request runs two atomic server-side scripts in the store
(`service/store/scripts/*.lua`): `ADMIT` before the provider call (sliding request window, token
window, in-flight slot, budgets), the one round trip a request waits for, and `SETTLE` after it
(free the slot, replace the token estimate with the tokens used, add the cost). The settle is sent
once the answer has gone out and its reply read in the background, so no request waits for it;
when settling can change the client's next admission (`Admission.settles_first`), it is done
before the answer goes out and waits for the store's reply, so that request, wherever it lands,
finds the store up to date (the store orders calls from different connections as it reads them,
not as they were sent). The calls on a request's path use connections held open
(`service.store.connections.OpenConnections`), not the client's pool: it halves their cost.
The request window is exact; the token window counts in whole seconds (a reservation
leaves it up to a second early). All keys of a client share one hash tag (`aiproxy:{<client>}:...`),
its end users' keys (`aiproxy:{<client>}:user:<hash>:...`) and the ids of its tokens used once
(`aiproxy:{<client>}:seen:<hash>`) too, so a script's keys sit in one slot of a clustered Valkey
and a request with an end user is still one round trip before the provider call; nothing scans keys.

An in-flight slot is a lease that expires AIPROXY_LIMITS_LEASE_SECONDS after it was last renewed;
every process renews its leases in the background (one pipelined call a third of that period,
never on a request's path), so the slots of a process that dies come back within that time.

When the store cannot be reached, AIPROXY_LIMITS_ON_STORE_ERROR decides: `open` counts in this
process meanwhile (one ERROR per outage, which reaches Honeybadger), `closed` answers 503. The
store is tried again after a second; when it answers, sharing resumes without a restart.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from service.core.errors import Unavailable
from service.core.request_state import Usage
from service.governance import end_user_limits
from service.governance.end_user_limits import EndUserAdmission, EndUserLimits, EndUserUsage
from service.governance.end_users import EndUser
from service.governance.limits import (
    WINDOW_SECONDS,
    Admission,
    ClientUsage,
    Limits,
    LocalLimiter,
    budget_refusal,
    refusal_over_concurrency,
    refusal_over_rpm,
    refusal_over_tpm,
    replayed,
    windows,
)
from service.store.client import STORE_ERRORS, Store
from service.store.connections import Along, OpenConnections, Sent
from service.store.scripts import ADMIT, SETTLE, USAGE

log = logging.getLogger(__name__)

RETRY_AFTER_OUTAGE = 1.0  # seconds before a store that failed is tried again
_DAY_SECONDS, _MONTH_SECONDS = 2 * 86400, 32 * 86400  # how long a budget window's spending is kept


def keys(client: str, now: float, end_user: str | None = None) -> list[str]:
    """The store's keys of `client`, or of its end user of hash `end_user`: the client's hash tag,
    so one slot in a cluster."""
    day, month = windows(now)
    tag = f"aiproxy:{{{client}}}" if end_user is None else f"aiproxy:{{{client}}}:user:{end_user}"
    return [
        f"{tag}:requests",
        f"{tag}:tokens",
        f"{tag}:in_flight",
        f"{tag}:spent:{day}",
        f"{tag}:spent:{month}",
        f"{tag}:tokens:{day}",
    ]


def seen_key(client: str, token_id: str) -> str:
    """Where a token id used once is remembered (hashed: an issuer's ids may be long)."""
    return f"aiproxy:{{{client}}}:seen:{hashlib.sha256(token_id.encode()).hexdigest()[:32]}"


def _none(value: float | None) -> float:
    return -1 if value is None else value


def _subject(limits: Limits | EndUserLimits, estimate: int) -> list[float]:
    """A subject's ARGV of the admit script."""
    return [
        _none(limits.rpm),
        _none(limits.max_concurrent),
        _none(limits.tpm),
        estimate if limits.tpm is not None else 0,
        _none(limits.budget_usd_per_day),
        _none(limits.budget_usd_per_month),
        _none(getattr(limits, "tokens_per_day", None)),
    ]


class SharedLimiter:
    """Counts in the store; falls back on `local` (or refuses) while the store cannot be reached."""

    def __init__(
        self,
        store: Store,
        local: LocalLimiter,
        *,
        on_store_error: str = "open",
        lease_seconds: float = 30.0,
        where: str = "",  # the store's host, for the log lines
        clock: Callable[[], float] = time.time,
        background_settles: bool = True,
    ) -> None:
        self.store = store
        self.local = local
        self.on_store_error = on_store_error
        self.lease_seconds = lease_seconds
        self.where = f"The limits store {where}" if where else "The limits store"
        self.clock = clock
        self._calls = OpenConnections(store)
        self._admit = store.register_script(ADMIT)
        self._settle = store.register_script(SETTLE)
        self._usage = store.register_script(USAGE)
        self._down_until = 0.0  # monotonic time before which the store is not tried
        self._outage = False
        self._leases: dict[str, list[str]] = {}  # this process's live leases -> their in_flight keys
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self.background_settles = background_settles
        self._unanswered: collections.deque[Sent] = collections.deque()  # settles sent, replies unread
        self._replies_waiting = threading.Event()
        self._reader: threading.Thread | None = None

    # --- the limiter interface -------------------------------------------------------------

    def admit(
        self,
        client: str,
        limits: Limits,
        estimate: int,
        end_user: EndUser | None = None,
        along: Along | None = None,
    ) -> Admission:
        if not self._store_usable():
            return self._without_store(client, limits, estimate, end_user)
        now = self.clock()
        admission = Admission(client, limits, estimate if limits.tpm is not None else 0, now, local=False)
        names = keys(client, now)
        seen_until = -1
        subjects = [_subject(limits, estimate)]
        user_limits = end_user.limits if end_user is not None else None
        if end_user is not None and user_limits is not None:
            names += keys(client, now, end_user.hashed)
            subjects.append(_subject(user_limits, estimate))
            reserved = estimate if user_limits.tpm is not None else 0
            admission.end_user = EndUserAdmission(end_user.hashed, user_limits, reserved)
        if end_user is not None and end_user.reject_replay and end_user.token_id is not None:
            names.append(seen_key(client, end_user.token_id))
            seen_until = int((end_user.expires or now + WINDOW_SECONDS) * 1000)
        arguments = [
            int(now * 1000),
            int(WINDOW_SECONDS * 1000),
            admission.lease,
            int((now + self.lease_seconds) * 1000),
            admission.lease,  # the request's member of the request windows: unique
            seen_until,
            len(subjects),
            *[value for subject in subjects for value in subject],
        ]
        try:
            answer = self._calls.run(self._admit, names, arguments, along)
        except STORE_ERRORS as error:
            self._failed(error)
            return self._without_store(client, limits, estimate, end_user)
        self._recovered()
        reason = int(answer[0])
        if reason == 6:
            raise replayed()
        if reason and int(answer[4]) == 2 and user_limits is not None:
            wait = int(answer[1]) / 1000
            if reason == 4:
                end_user_limits.budget_refusal(client, user_limits, float(answer[2]), float(answer[3]), now)
            raise end_user_limits.refusal(reason, client, user_limits, wait, estimate)
        if reason == 1:
            raise refusal_over_rpm(client, limits, int(answer[1]) / 1000)
        if reason == 2:
            raise refusal_over_concurrency(client, limits)
        if reason == 3:
            raise refusal_over_tpm(client, limits, estimate, int(answer[1]) / 1000)
        if reason == 4:
            budget_refusal(client, limits, float(answer[2]), float(answer[3]), now)
            raise AssertionError("a budget refusal without a spent budget")  # the script and Python agree
        requests, first_request_ms, tokens, first_second, spent_day, spent_month, in_flight = answer[1:8]
        if admission.end_user is not None:
            admission.end_user.in_flight = int(answer[14])
            if admission.end_user.limits.tpm is not None:
                admission.end_user.remaining_tokens = admission.end_user.limits.tpm - int(answer[10])
        admission.remaining_requests = limits.rpm - int(requests)
        admission.reset_requests = int(first_request_ms) / 1000 + WINDOW_SECONDS - now
        if limits.tpm is not None:
            admission.remaining_tokens = limits.tpm - int(tokens)
            admission.reset_tokens = int(first_second) + WINDOW_SECONDS - now
        admission.spent_day, admission.spent_month = float(spent_day), float(spent_month)
        admission.in_flight = int(in_flight)
        self._hold(admission.lease, [names[2], names[8]] if admission.end_user is not None else [names[2]])
        return admission

    def settle(self, admission: Admission, used: Usage) -> None:
        if admission.local:
            self.local.settle(admission, used)
            return
        if admission.settled:
            return
        admission.settled = True
        self._release(admission.lease)
        names = keys(admission.client, admission.admitted_at)[1:]  # tokens, in_flight, day, month, today
        subjects = [used.tokens - admission.reserved_tokens if admission.limits.tpm is not None else 0, 0]
        end_user = admission.end_user
        if end_user is not None:
            names += keys(admission.client, admission.admitted_at, end_user.hashed)[1:]
            subjects += [
                used.tokens - end_user.reserved_tokens if end_user.limits.tpm is not None else 0,
                used.tokens if end_user.limits.tokens_per_day is not None else 0,
            ]
        arguments = [
            admission.lease,
            admission.token_second,
            repr(used.cost_usd or 0.0),
            _DAY_SECONDS,
            _MONTH_SECONDS,
            len(subjects) // 2,
            *subjects,
        ]
        settle_keys = names
        try:
            if admission.settles_first or not self.background_settles:
                # The store orders calls from different connections as it reads them, not as they
                # were sent: only its reply proves the next admission will see this settle.
                self._calls.run(self._settle, settle_keys, arguments)
                return
            # Nothing the client does next depends on it: its reply is read in the background.
            sent = self._calls.send(self._settle, settle_keys, arguments)
        except STORE_ERRORS as error:
            # The slot's lease expires by itself; the tokens and cost of this request are not shared.
            self._failed(error)
            return
        with self._lock:
            self._unanswered.append(sent)
            if self._reader is None:
                # A daemon thread (a greenlet in the server), like the lease renewal.
                self._reader = threading.Thread(target=self._read_forever, name="settles", daemon=True)
                self._reader.start()
        self._replies_waiting.set()

    def _read_replies(self) -> None:
        """Read the replies of the settles sent so far."""
        while True:
            with self._lock:
                if not self._unanswered:
                    return
                sent = self._unanswered.popleft()
            try:
                self._calls.receive(sent)
            except STORE_ERRORS as error:
                self._failed(error)

    def _read_forever(self) -> None:
        while True:
            self._replies_waiting.wait()
            self._replies_waiting.clear()
            self._read_replies()

    def usage(self, client: str, limits: Limits) -> ClientUsage:
        counted = self._counted(client, None)
        if counted is None:
            return self.local.usage(client, limits)
        requests, tokens, in_flight, day, month, _ = counted
        return {
            "requests_last_minute": int(requests),
            "tokens_last_minute": int(tokens),
            "in_flight": int(in_flight),
            "spent_usd_today": round(float(day), 6),
            "spent_usd_this_month": round(float(month), 6),
        }

    def end_user_usage(self, client: str, end_user: EndUser) -> EndUserUsage:
        counted = self._counted(client, end_user.hashed)
        if counted is None:
            return self.local.end_user_usage(client, end_user)
        requests, tokens, in_flight, day, month, today = counted
        return {
            "requests_last_minute": int(requests),
            "tokens_last_minute": int(tokens),
            "tokens_today": int(today),
            "in_flight": int(in_flight),
            "spent_usd_today": round(float(day), 6),
            "spent_usd_this_month": round(float(month), 6),
        }

    def _counted(self, client: str, end_user: str | None) -> list[Any] | None:
        """The USAGE script's figures for `client` (or its end user), or None when the store is
        not usable now (the caller then answers from this process's counts)."""
        if not self._store_usable():
            return None
        now = self.clock()
        try:
            counted = self._usage(
                keys=keys(client, now, end_user), args=[int(now * 1000), int(WINDOW_SECONDS * 1000)]
            )
        except STORE_ERRORS as error:
            self._failed(error)
            return None
        self._recovered()
        return list(counted)

    @property
    def shared(self) -> bool:
        return self._store_usable()

    # --- the store's health ------------------------------------------------------------------

    def _store_usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def _without_store(
        self, client: str, limits: Limits, estimate: int, end_user: EndUser | None = None
    ) -> Admission:
        if self.on_store_error == "closed":
            raise Unavailable(
                "Client limits cannot be checked right now (their store is unreachable); try again shortly.",
                code="limits_unavailable",
                headers={"Retry-After": str(int(RETRY_AFTER_OUTAGE) or 1)},
            )
        return self.local.admit(client, limits, estimate, end_user)

    def _failed(self, error: Exception) -> None:
        self._down_until = time.monotonic() + RETRY_AFTER_OUTAGE
        if not self._outage:
            self._outage = True
            mode = "refusing requests (503)" if self.on_store_error == "closed" else "counting per process"
            log.error("%s failed (%s); %s until it is back", self.where, type(error).__name__, mode)

    def _recovered(self) -> None:
        if self._outage:
            self._outage = False
            log.info("%s is back; limits are shared again", self.where)

    # --- leases ----------------------------------------------------------------------------------

    def _hold(self, lease: str, in_flight_keys: list[str]) -> None:
        with self._lock:
            self._leases[lease] = in_flight_keys
            if self._renewer is None:
                # A daemon thread (a greenlet in the server): renewals never sit on a request's path.
                self._renewer = threading.Thread(
                    target=self._renew_forever, name="lease-renewal", daemon=True
                )
                self._renewer.start()

    def _release(self, lease: str) -> None:
        with self._lock:
            self._leases.pop(lease, None)

    def _renew_forever(self) -> None:
        while True:
            time.sleep(self.lease_seconds / 3)
            self.renew()

    def renew(self) -> None:
        """Push back the expiry of every live lease of this process (one pipelined call)."""
        with self._lock:
            leases = list(self._leases.items())
        if not leases:
            return
        expiry = int((self.clock() + self.lease_seconds) * 1000)
        pipeline = self.store.pipeline(transaction=False)
        for lease, in_flight_keys in leases:
            for key in in_flight_keys:
                pipeline.zadd(key, {lease: expiry}, xx=True)
                pipeline.pexpire(key, int(self.lease_seconds * 1000) + 1000)
        try:
            pipeline.execute()
        except STORE_ERRORS as error:
            log.debug("Could not renew %d leases (%s)", len(leases), type(error).__name__)

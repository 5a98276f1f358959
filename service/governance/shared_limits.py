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
so a script's keys sit in one slot of a clustered Valkey; nothing scans keys.

An in-flight slot is a lease that expires AIPROXY_LIMITS_LEASE_SECONDS after it was last renewed;
every process renews its leases in the background (one pipelined call a third of that period,
never on a request's path), so the slots of a process that dies come back within that time.

When the store cannot be reached, AIPROXY_LIMITS_ON_STORE_ERROR decides: `open` counts in this
process meanwhile (one ERROR per outage, which reaches Honeybadger), `closed` answers 503. The
store is tried again after a second; when it answers, sharing resumes without a restart.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from service.core.errors import Unavailable
from service.core.request_state import Usage
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
    windows,
)
from service.store.client import STORE_ERRORS, Store
from service.store.connections import OpenConnections, Sent
from service.store.scripts import ADMIT, SETTLE, USAGE

log = logging.getLogger(__name__)

RETRY_AFTER_OUTAGE = 1.0  # seconds before a store that failed is tried again
_DAY_SECONDS, _MONTH_SECONDS = 2 * 86400, 32 * 86400  # how long a budget window's spending is kept


def keys(client: str, now: float) -> list[str]:
    """The store's keys of `client`: one hash tag, so one slot in a cluster."""
    day, month = windows(now)
    tag = f"aiproxy:{{{client}}}"
    return [
        f"{tag}:requests",
        f"{tag}:tokens",
        f"{tag}:in_flight",
        f"{tag}:spent:{day}",
        f"{tag}:spent:{month}",
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
        self._leases: dict[str, str] = {}  # this process's live leases -> their in_flight key
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self.background_settles = background_settles
        self._unanswered: collections.deque[Sent] = collections.deque()  # settles sent, replies unread
        self._replies_waiting = threading.Event()
        self._reader: threading.Thread | None = None

    # --- the limiter interface -------------------------------------------------------------

    def admit(self, client: str, limits: Limits, estimate: int) -> Admission:
        if not self._store_usable():
            return self._without_store(client, limits, estimate)
        now = self.clock()
        admission = Admission(client, limits, estimate if limits.tpm is not None else 0, now, local=False)
        names = keys(client, now)
        arguments = [
            int(now * 1000),
            int(WINDOW_SECONDS * 1000),
            limits.rpm,
            limits.max_concurrent,
            -1 if limits.tpm is None else limits.tpm,
            admission.reserved_tokens,
            admission.lease,
            int((now + self.lease_seconds) * 1000),
            -1 if limits.budget_usd_per_day is None else limits.budget_usd_per_day,
            -1 if limits.budget_usd_per_month is None else limits.budget_usd_per_month,
            admission.lease,  # the request's member of the request window: unique
        ]
        try:
            answer = self._calls.run(self._admit, names, arguments)
        except STORE_ERRORS as error:
            self._failed(error)
            return self._without_store(client, limits, estimate)
        self._recovered()
        reason = int(answer[0])
        if reason == 1:
            raise refusal_over_rpm(client, limits, int(answer[1]) / 1000)
        if reason == 2:
            raise refusal_over_concurrency(client, limits)
        if reason == 3:
            raise refusal_over_tpm(client, limits, estimate, int(answer[1]) / 1000)
        if reason == 4:
            budget_refusal(client, limits, float(answer[2]), float(answer[3]), now)
            raise AssertionError("a budget refusal without a spent budget")  # the script and Python agree
        _, requests, first_request_ms, tokens, first_second, spent_day, spent_month, in_flight = answer
        admission.remaining_requests = limits.rpm - int(requests)
        admission.reset_requests = int(first_request_ms) / 1000 + WINDOW_SECONDS - now
        if limits.tpm is not None:
            admission.remaining_tokens = limits.tpm - int(tokens)
            admission.reset_tokens = int(first_second) + WINDOW_SECONDS - now
        admission.spent_day, admission.spent_month = float(spent_day), float(spent_month)
        admission.in_flight = int(in_flight)
        self._hold(admission.lease, names[2])
        return admission

    def settle(self, admission: Admission, used: Usage) -> None:
        if admission.local:
            self.local.settle(admission, used)
            return
        if admission.settled:
            return
        admission.settled = True
        self._release(admission.lease)
        names = keys(admission.client, admission.admitted_at)
        correction = used.tokens - admission.reserved_tokens if admission.limits.tpm is not None else 0
        arguments = [
            admission.lease,
            admission.token_second if admission.limits.tpm is not None else -1,
            correction,
            repr(used.cost_usd or 0.0),
            _DAY_SECONDS,
            _MONTH_SECONDS,
        ]
        settle_keys = [names[1], names[2], names[3], names[4]]  # tokens, in_flight, day, month
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
        if self._store_usable():
            now = self.clock()
            try:
                requests, tokens, in_flight, day, month = self._usage(
                    keys=keys(client, now), args=[int(now * 1000), int(WINDOW_SECONDS * 1000)]
                )
            except STORE_ERRORS as error:
                self._failed(error)
            else:
                self._recovered()
                return {
                    "requests_last_minute": int(requests),
                    "tokens_last_minute": int(tokens),
                    "in_flight": int(in_flight),
                    "spent_usd_today": round(float(day), 6),
                    "spent_usd_this_month": round(float(month), 6),
                }
        return self.local.usage(client, limits)

    @property
    def shared(self) -> bool:
        return self._store_usable()

    # --- the store's health ------------------------------------------------------------------

    def _store_usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def _without_store(self, client: str, limits: Limits, estimate: int) -> Admission:
        if self.on_store_error == "closed":
            raise Unavailable(
                "Client limits cannot be checked right now (their store is unreachable); try again shortly.",
                code="limits_unavailable",
                headers={"Retry-After": str(int(RETRY_AFTER_OUTAGE) or 1)},
            )
        return self.local.admit(client, limits, estimate)

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

    def _hold(self, lease: str, in_flight_key: str) -> None:
        with self._lock:
            self._leases[lease] = in_flight_key
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
        for lease, key in leases:
            pipeline.zadd(key, {lease: expiry}, xx=True)
            pipeline.pexpire(key, int(self.lease_seconds * 1000) + 1000)
        try:
            pipeline.execute()
        except STORE_ERRORS as error:
            log.debug("Could not renew %d leases (%s)", len(leases), type(error).__name__)

"""Client limits and budgets counted in Redis or Valkey, shared by every server process and task.

The same limits as `service.governance.limits.LocalLimiter`, with the same answers, counted once for the
whole fleet. Each request runs two atomic server-side scripts in the store: `ADMIT` before the
provider call (sliding request window, token window, in-flight slot, budgets), the one round trip
a request waits for, and `SETTLE` after it (free the slot, replace the token estimate with the
tokens used, add the cost). The settle is sent once the answer has gone out and its reply read
in the background, so no request waits for it; when settling can change the client's next
admission (`Admission.settles_first`), it is done before the answer goes out and waits for the
store's reply, so that request, wherever it lands, finds the store up to date (the store orders
calls from different connections as it reads them, not as they were sent). The calls on a
request's path use connections held open (`_OpenConnections`), not the client's pool: it halves
their cost.
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
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.credentials import CredentialProvider
from redis.retry import Retry

from service.core.errors import Unavailable
from service.core.request_state import Usage
from service.governance.limits import (
    WINDOW_SECONDS,
    Admission,
    Limits,
    LocalLimiter,
    budget_refusal,
    refusal_over_concurrency,
    refusal_over_rpm,
    refusal_over_tpm,
    windows,
)

log = logging.getLogger(__name__)

# What a store that cannot be reached raises (the cluster client's own errors are not RedisErrors).
STORE_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)

RETRY_AFTER_OUTAGE = 1.0  # seconds before a store that failed is tried again
_SOCKET_TIMEOUT = 0.5  # a store slower than this counts as down: the request must not wait on it
_DAY_SECONDS, _MONTH_SECONDS = 2 * 86400, 32 * 86400  # how long a budget window's spending is kept

# KEYS: requests (zset: member -> admission time), tokens (hash: second -> tokens reserved or used),
#       in_flight (zset: lease -> expiry), spent that day, spent that month.
# ARGV: now ms, window ms, rpm, max_concurrent, tpm (-1: none), estimate, lease, lease expiry ms,
#       budget_day (-1: none), budget_month (-1: none), request member.
# Returns {0, requests, first request ms, tokens, first token second, spent_day, spent_month,
# in flight} when admitted, else {reason, wait ms, ...}: 1 rpm, 2 max_concurrent, 3 tpm, 4 a budget.
ADMIT = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local requests = redis.call('ZCARD', KEYS[1])
local rpm = tonumber(ARGV[3])
if requests >= rpm then
  local opener = redis.call('ZRANGE', KEYS[1], requests - rpm, requests - rpm, 'WITHSCORES')
  return {1, tonumber(opener[2]) + window - now}
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local in_flight = redis.call('ZCARD', KEYS[3])
if in_flight >= tonumber(ARGV[4]) then
  return {2, 1000}
end
local tpm, estimate = tonumber(ARGV[5]), tonumber(ARGV[6])
local tokens, first_second = 0, -1
if tpm >= 0 then
  local horizon = math.floor((now - window) / 1000)
  local buckets = redis.call('HGETALL', KEYS[2])
  for i = 1, #buckets, 2 do
    local second = tonumber(buckets[i])
    if second <= horizon then
      redis.call('HDEL', KEYS[2], buckets[i])
    else
      tokens = tokens + tonumber(buckets[i + 1])
      if first_second < 0 or second < first_second then first_second = second end
    end
  end
  if tokens + estimate > tpm then
    -- Refused: when will enough of the window's tokens have left it? (oldest second first)
    local seconds = {}
    for i = 1, #buckets, 2 do
      local second = tonumber(buckets[i])
      if second > horizon then table.insert(seconds, {second, tonumber(buckets[i + 1])}) end
    end
    table.sort(seconds, function(a, b) return a[1] < b[1] end)
    local needed, wait = tokens + estimate - tpm, window
    for _, entry in ipairs(seconds) do
      needed = needed - entry[2]
      if needed <= 0 then
        wait = entry[1] * 1000 + window - now
        break
      end
    end
    return {3, wait, tokens}
  end
end
local spent_day = redis.call('GET', KEYS[4]) or '0'
local spent_month = redis.call('GET', KEYS[5]) or '0'
local budget_day, budget_month = tonumber(ARGV[9]), tonumber(ARGV[10])
if (budget_day >= 0 and tonumber(spent_day) >= budget_day)
    or (budget_month >= 0 and tonumber(spent_month) >= budget_month) then
  return {4, 0, spent_day, spent_month}
end
redis.call('ZADD', KEYS[1], now, ARGV[11])
redis.call('PEXPIRE', KEYS[1], window + 1000)
redis.call('ZADD', KEYS[3], tonumber(ARGV[8]), ARGV[7])
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[8]) - now + 1000)
if tpm >= 0 then
  local second = math.floor(now / 1000)
  redis.call('HINCRBY', KEYS[2], second, estimate)
  redis.call('PEXPIRE', KEYS[2], window + 2000)
  if first_second < 0 then first_second = second end
  tokens = tokens + estimate
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, requests + 1, tonumber(first[2]), tokens, first_second, spent_day, spent_month, in_flight + 1}
"""

# KEYS: tokens, in_flight, spent that day, spent that month.
# ARGV: lease, token second (-1: no tpm), token correction, cost (USD), day ttl s, month ttl s.
SETTLE = """
redis.call('ZREM', KEYS[2], ARGV[1])
local second, correction = tonumber(ARGV[2]), tonumber(ARGV[3])
if second >= 0 and correction ~= 0 and redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[2], correction)
end
if tonumber(ARGV[4]) > 0 then
  redis.call('INCRBYFLOAT', KEYS[3], ARGV[4])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5]))
  redis.call('INCRBYFLOAT', KEYS[4], ARGV[4])
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[6]))
end
return 1
"""

# KEYS: requests, tokens, in_flight, spent that day, spent that month. ARGV: now ms, window ms.
USAGE = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local requests = redis.call('ZCOUNT', KEYS[1], now - window, '+inf')
local horizon = math.floor((now - window) / 1000)
local buckets = redis.call('HGETALL', KEYS[2])
local tokens = 0
for i = 1, #buckets, 2 do
  if tonumber(buckets[i]) > horizon then tokens = tokens + tonumber(buckets[i + 1]) end
end
local in_flight = redis.call('ZCOUNT', KEYS[3], now, '+inf')
return {requests, tokens, in_flight, redis.call('GET', KEYS[4]) or '0', redis.call('GET', KEYS[5]) or '0'}
"""


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


class _Password(CredentialProvider):
    """The store's user and password, the password read from the secret at each new connection
    (so a rotated secret is used without a restart)."""

    def __init__(self, username: str | None, password: Callable[[], str | None]) -> None:
        self.username = username
        self.password = password

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        password = self.password() or ""
        return (self.username, password) if self.username else (password,)


def store_client(url: str, password: Callable[[], str | None], *, cluster: bool = False) -> redis.Redis:
    """A client of the store at `url`, its password from `password()` (None: no AUTH); with
    `cluster`, one that speaks the cluster protocol (a clustered Valkey, ElastiCache Serverless)."""
    username = urlsplit(url).username
    # No retries: a store that fails is skipped for a second (SharedLimiter), not waited for.
    options: dict = {
        "socket_timeout": _SOCKET_TIMEOUT,
        "socket_connect_timeout": _SOCKET_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }
    if password() or username:
        options["credential_provider"] = _Password(username, password)
    if cluster:
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


@dataclass
class _Sent:
    """A call sent on a connection of its own, its reply not read yet."""

    script: Script
    names: list[str]
    arguments: list
    connection: redis.Connection
    idle: list  # where the connection goes back once its reply is read
    reused: bool  # the connection had served before (the store may have closed it meanwhile)


class _OpenConnections:
    """Run a script with one command on a connection to the store kept open between calls: the
    way of the calls on a request's path (ADMIT, SETTLE).

    A call through a redis-py client checks a connection out of its pool (polling it) and back,
    inside retry and deprecation layers: on this service's machine that costs as much CPU as the
    round trip itself, and more added latency than the store's whole budget (docs/benchmarks.md).
    A call may also be sent now and its reply read later (`send`, `receive`). The connections come
    from the client's own pool (`make_connection`: its address, TLS, user and password, timeouts),
    one per call under way, and in a cluster from the pool of the node that holds the keys' slot.
    An error reply the client knows how to handle (a moved slot, a store that lost its scripts) is
    left to it: the call is made again through the client.
    """

    def __init__(self, store: redis.Redis) -> None:
        self.store = store
        self._idle: dict[str, list] = {}  # node -> connections open and not in use

    def run(self, script: Script, names: list[str], arguments: list) -> object:
        return self.receive(self.send(script, names, arguments))

    def send(self, script: Script, names: list[str], arguments: list, *, fresh: bool = False) -> _Sent:
        """Send the call; `receive` its reply (the connection is the call's until then)."""
        node, pool = self._pool_for(names[0])
        idle = self._idle.setdefault(node, [])
        reused = bool(idle) and not fresh
        connection = idle.pop() if reused else pool.make_connection()
        try:
            connection.send_command("EVALSHA", script.sha, len(names), *names, *arguments)
        except redis.ConnectionError:
            connection.disconnect()
            if not reused:
                raise
            return self.send(script, names, arguments, fresh=True)  # closed while idle: a new one
        except BaseException:
            connection.disconnect()  # anything may have been written of it
            raise
        return _Sent(script, names, arguments, connection, idle, reused)

    def receive(self, sent: _Sent) -> object:
        try:
            answer = sent.connection.read_response()
        except redis.ResponseError:
            sent.idle.append(sent.connection)  # an error reply, read whole: ready for more
            return sent.script(keys=sent.names, args=sent.arguments)  # the client handles it
        except redis.ConnectionError:
            sent.connection.disconnect()
            if not sent.reused:
                raise
            # The store closed it while it was idle (a restart, a failover, an idle timeout).
            return self.receive(self.send(sent.script, sent.names, sent.arguments, fresh=True))
        except BaseException:
            sent.connection.disconnect()  # anything else may have left half a reply on it
            raise
        sent.idle.append(sent.connection)
        return answer

    def _pool_for(self, key: str) -> tuple[str, redis.ConnectionPool]:
        if isinstance(self.store, RedisCluster):
            node = self.store.get_node_from_key(key)
            return node.name, self.store.get_redis_connection(node).connection_pool
        return "", self.store.connection_pool


class SharedLimiter:
    """Counts in the store; falls back on `local` (or refuses) while the store cannot be reached."""

    def __init__(
        self,
        store: redis.Redis,
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
        self._calls = _OpenConnections(store)
        self._admit = store.register_script(ADMIT)
        self._settle = store.register_script(SETTLE)
        self._usage = store.register_script(USAGE)
        self._down_until = 0.0  # monotonic time before which the store is not tried
        self._outage = False
        self._leases: dict[str, str] = {}  # this process's live leases -> their in_flight key
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self.background_settles = background_settles
        self._unanswered: collections.deque[_Sent] = collections.deque()  # settles sent, replies unread
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

    def usage(self, client: str, limits: Limits) -> dict:
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

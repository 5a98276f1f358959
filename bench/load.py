"""The load generator: N concurrent aiohttp clients, each sending requests back to back."""

from __future__ import annotations

import asyncio
import collections
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds per successful request
    first_bytes: list[float] = field(default_factory=list)  # seconds to the first body byte
    errors: collections.Counter = field(default_factory=collections.Counter)
    elapsed: float = 0.0
    server_cpu: float | None = None  # CPU seconds the server under test spent on these requests

    @property
    def done(self) -> int:
        return len(self.latencies)

    @property
    def cpu_per_request(self) -> float | None:
        """The server's CPU seconds per request sent (errors included), when it was measured."""
        sent = self.done + self.error_count
        return None if self.server_cpu is None or not sent else self.server_cpu / sent

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def add(self, other: LoadResult) -> None:
        """Count `other`'s requests, errors and time as part of this result."""
        self.latencies += other.latencies
        self.first_bytes += other.first_bytes
        self.errors.update(other.errors)
        self.elapsed += other.elapsed
        if other.server_cpu is not None:
            self.server_cpu = (self.server_cpu or 0.0) + other.server_cpu


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(share * 1000) - 1]


async def _client(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    stream: bool,
    deadline: float,
    count: int | None,
    result: LoadResult,
) -> None:
    sent = 0
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench-client"}
    while (count is None and time.perf_counter() < deadline) or (count is not None and sent < count):
        sent += 1
        started = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                first = await response.content.readany()
                first_byte = time.perf_counter() - started
                rest = await response.read()
                if response.status != 200:
                    result.errors[f"HTTP {response.status}"] += 1
                    continue
                if stream and not (first + rest).rstrip().endswith(b"data: [DONE]"):
                    result.errors["stream ended without [DONE]"] += 1
                    continue
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            result.errors[type(error).__name__] += 1
            continue
        result.latencies.append(time.perf_counter() - started)
        result.first_bytes.append(first_byte)


async def _run(
    url: str, body: bytes, *, clients: int, stream: bool, duration: float | None, count: int | None
) -> LoadResult:
    result = LoadResult()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + (duration or 0)
        await asyncio.gather(
            *(_client(session, url, body, stream, deadline, count, result) for _ in range(clients))
        )
        result.elapsed = time.perf_counter() - started
    return result


def run_load(
    url: str,
    body: bytes,
    *,
    clients: int,
    stream: bool = False,
    duration: float | None = None,
    count: int | None = None,
) -> LoadResult:
    """Drive `clients` concurrent clients for `duration` seconds, or `count` requests each."""
    if (duration is None) == (count is None):
        raise ValueError("give either duration or count")
    return asyncio.run(_run(url, body, clients=clients, stream=stream, duration=duration, count=count))


def measure(
    scenario: Any,
    targets: dict[str, tuple[str, bytes, bool]],
    *,
    warm_body: bytes | None = None,
    cpu_clocks: dict[str, Callable[[], float]] | None = None,
    runner: Callable[..., LoadResult] | None = None,
) -> dict[str, LoadResult]:
    """Run `scenario`'s load (its clients, and its duration or request count) at every target
    (path name -> URL, body, whether the answer streams); return each path's result.

    `cpu_clocks` gives, for some paths, a reading of the CPU seconds the server behind that path
    has used so far: it is read before and after each of that path's runs (not the warm-ups), and
    the difference is the result's `server_cpu`.

    Every target is warmed up first (connections opened, pools filled, any to a previous fake
    dropped). A scenario with `rounds` > 1 splits its requests (or its duration) into that many
    rounds and alternates the targets within them (direct, proxy; then proxy, direct; ...), so a
    drift of the machine's speed during the run falls on every path alike instead of on whichever
    ran while the machine was slower.

    `runner` runs the measured loads in place of `run_load` (same arguments; bench/wrk.py's for
    a timed scenario); the warm-ups always use `run_load`.
    """
    for url, body, _ in targets.values():
        run_load(url, warm_body or body, clients=min(scenario.clients, 50), count=3)
    rounds = max(1, scenario.rounds if scenario.count is None else min(scenario.rounds, scenario.count))
    duration = None if scenario.duration is None else scenario.duration / rounds
    results = {path: LoadResult() for path in targets}
    order = list(targets)
    for number in range(rounds):
        count = None if scenario.count is None else _share(scenario.count, rounds, number)
        for path in order if number % 2 == 0 else reversed(order):
            url, body, stream = targets[path]
            which = f" (round {number + 1} of {rounds})" if rounds > 1 else ""
            print(f"  {scenario.name}: {path}{which} ...", file=sys.stderr, flush=True)
            clock = (cpu_clocks or {}).get(path)
            cpu_before = clock() if clock else 0.0
            load = (runner or run_load)(
                url, body, clients=scenario.clients, stream=stream, duration=duration, count=count
            )
            if clock:
                load.server_cpu = clock() - cpu_before
            results[path].add(load)
    return results


def _share(total: int, rounds: int, number: int) -> int:
    """Round `number`'s part of `total` requests split over `rounds` (they add up to `total`)."""
    return total // rounds + (1 if number < total % rounds else 0)

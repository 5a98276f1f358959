"""The load generator: N concurrent aiohttp clients, each sending requests back to back."""

from __future__ import annotations

import asyncio
import collections
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds per successful request
    first_bytes: list[float] = field(default_factory=list)  # seconds to the first body byte
    errors: collections.Counter = field(default_factory=collections.Counter)
    elapsed: float = 0.0

    @property
    def done(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


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
    scenario: Any, path: str, url: str, body: bytes, *, stream: bool, warm_body: bytes | None = None
) -> LoadResult:
    """Warm `url` up (open connections, fill pools, drop any to a previous fake), then run
    `scenario`'s load (its clients, and its duration or request count) at it."""
    run_load(url, warm_body or body, clients=min(scenario.clients, 50), count=3)
    print(f"  {scenario.name}: {path} ...", file=sys.stderr, flush=True)
    return run_load(
        url, body, clients=scenario.clients, stream=stream, duration=scenario.duration, count=scenario.count
    )

"""`python -m bench`: start the fake upstream and the proxy, load both, print a table.

Every scenario runs the same load twice: straight at the fake upstream ("direct") and through the
proxy ("proxy"); the difference is what the proxy adds. Everything runs on 127.0.0.1, and every
loop stops by itself (a duration or a fixed number of requests).

    python -m bench                              # every scenario, about two minutes
    python -m bench --scenario throughput --clients 100 --duration 20
    python -m bench --scenario streams --streams 2000 --stream-seconds 5
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass

from bench import bedrock, store
from bench.load import LoadResult, measure, percentile
from bench.processes import (
    cpu_seconds,
    current_rss_mib,
    fake_process,
    fake_upstream,
    free_port,
    peak_rss_mib,
    proxy_server,
)
from testbed.server import RunningServer


@dataclass
class Scenario:
    name: str
    description: str
    clients: int
    stream: bool
    delay: float = 0.0  # the fake's fixed delay before every answer
    stream_chunks: int = 5
    stream_pause: float = 0.0
    duration: float | None = None  # seconds of load, or
    count: int | None = None  # requests per client
    rounds: int = 1  # count only: interleave direct and proxy in this many rounds (bench.load.measure)
    bedrock: bool = False  # a `bedrock/` model against the fake Bedrock runtime (bench/bedrock.py)
    # Two proxies with a client key store, side by side: "limits" counts the client's limits in
    # each process, "store" in a shared Redis (bench/store.py).
    limits: bool = False
    model: str = "gpt-4o-mini"  # "fallback": a model group whose first deployment always answers 503


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    chunks = 10
    return [
        Scenario(
            "latency",
            f"1 client, non-streaming, upstream delay {args.delay * 1000:g} ms",
            clients=args.clients or 1,
            stream=False,
            delay=args.delay,
            count=args.requests,
            rounds=args.rounds,
        ),
        Scenario(
            "throughput",
            "50 clients, non-streaming, zero-delay upstream",
            clients=args.clients or 50,
            stream=False,
            duration=args.duration,
        ),
        Scenario(
            "stream-throughput",
            "50 clients, short streams (5 chunks), zero-delay upstream",
            clients=args.clients or 50,
            stream=True,
            duration=args.duration,
        ),
        Scenario(
            "streams",
            f"{args.streams} concurrent streams of {args.stream_seconds:g} s each",
            clients=args.streams,
            stream=True,
            stream_chunks=chunks,
            stream_pause=args.stream_seconds / chunks,
            count=1,
        ),
        Scenario(
            "latency-fallback",
            "as latency, the model a group whose first deployment always answers 503 at once",
            clients=args.clients or 1,
            stream=False,
            delay=args.delay,
            count=args.requests,
            rounds=args.rounds,
            model=FALLBACK_MODEL,
        ),
        Scenario(
            "latency-store",
            "as latency, the client's limits counted in each process, then in Redis, side by side",
            clients=args.clients or 1,
            stream=False,
            delay=args.delay,
            count=args.requests,
            rounds=args.rounds,
            limits=True,
        ),
        Scenario(
            "throughput-store",
            "as throughput, limits counted in each process, then in Redis, alternating in rounds",
            clients=args.clients or 50,
            stream=False,
            duration=args.duration,
            rounds=args.rounds,
            limits=True,
        ),
        Scenario(
            "bedrock",
            "1 client, non-streaming bedrock/ model, Bedrock delay 10 ms (direct: Converse JSON)",
            clients=args.clients or 1,
            stream=False,
            delay=0.01,
            count=args.requests,
            rounds=args.rounds,
            bedrock=True,
        ),
        Scenario(
            "bedrock-stream",
            "1 client, streamed bedrock/ model, Bedrock delay 10 ms (direct: ConverseStream)",
            clients=args.clients or 1,
            stream=True,
            delay=0.01,
            count=max(1, args.requests // 5),
            rounds=args.rounds,
            bedrock=True,
        ),
    ]


FALLBACK_MODEL = "fallback"


def fallback_settings(failing_url: str) -> dict[str, str]:
    """A model group whose first deployment always fails at once, passed over by no cooldown: every
    request of the fallback scenario pays for trying it."""
    return {
        "AIPROXY_UPSTREAMS": json.dumps({"failing": {"base_url": failing_url, "key_env": "FAILING_KEY"}}),
        "FAILING_KEY": "sk-bench-failing",
        "AIPROXY_MODEL_ALIASES": json.dumps({FALLBACK_MODEL: ["failing/gpt-4o-mini", "gpt-4o-mini"]}),
        "AIPROXY_COOLDOWN_SECONDS": "0",
    }


def body_for(scenario: Scenario) -> bytes:
    body = {
        "model": scenario.model,
        "messages": [{"role": "user", "content": "Write one sentence about the sea."}],
    }
    if scenario.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def run_scenario(
    scenario: Scenario, proxies: dict[str, RunningServer], upstream_port: int
) -> dict[str, LoadResult]:
    """`scenario` straight at the fake ("direct") and through each of `proxies` (path -> server)."""
    with fake_upstream(
        upstream_port,
        delay=scenario.delay,
        stream_pause=scenario.stream_pause,
        stream_chunks=scenario.stream_chunks,
    ) as upstream_url:
        body = body_for(scenario)
        targets = {
            "direct": (
                upstream_url + "/chat/completions",
                body_for(Scenario("direct", "", 1, scenario.stream)),
                scenario.stream,
            ),
            **{
                path: (server.url + "/v1/chat/completions", body, scenario.stream)
                for path, server in proxies.items()
            },
        }
        warm_body = body_for(Scenario("warm", "", 1, False))
        clocks = {
            path: functools.partial(cpu_seconds, server.process.pid) for path, server in proxies.items()
        }
        return measure(scenario, targets, warm_body=warm_body, cpu_clocks=clocks)


def cpu_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def table(rows: list[tuple[Scenario, dict[str, LoadResult]]], rss: float) -> str:
    header = (
        "| scenario | path | clients | requests | req/s | p50 ms | p95 ms | p99 ms | added p50 ms "
        "| first byte p50 ms | first byte p99 ms | errors | proxy CPU ms/req |"
    )
    lines = [header, "|" + "---|" * 13]
    for scenario, results in rows:
        direct = results.get("direct")
        for path, result in results.items():
            added = None
            if path != "direct" and direct and direct.latencies and result.latencies:
                added = percentile(result.latencies, 0.5) - percentile(direct.latencies, 0.5)
            first_bytes = result.first_bytes if scenario.stream else []
            errors = str(result.error_count)
            if result.errors:
                errors += " (" + ", ".join(f"{k}: {v}" for k, v in result.errors.most_common(3)) + ")"
            lines.append(
                f"| {scenario.name} | {path} | {scenario.clients} | {result.done} | {result.rate:.0f} "
                f"| {ms(percentile(result.latencies, 0.5))} | {ms(percentile(result.latencies, 0.95))} "
                f"| {ms(percentile(result.latencies, 0.99))} | {ms(added)} "
                f"| {ms(percentile(first_bytes, 0.5))} | {ms(percentile(first_bytes, 0.99))} | {errors} "
                f"| {cpu_ms(result.cpu_per_request)} |"
            )
    lines.append("")
    lines.append(
        "proxy CPU ms/req: user + system CPU time of the gunicorn master and workers during the"
        " proxy runs, per request sent; paths `limits` and `store`: proxies with a client key store"
        " counting limits in each process and in Redis"
    )
    lines.append(f"Proxy peak RSS (gunicorn master + workers, sum of VmHWM): {rss:.0f} MiB")
    return "\n".join(lines)


def verdicts(
    rows: list[tuple[Scenario, dict[str, LoadResult]]], rss: float, peaks: dict[str, float]
) -> list[str]:
    found = {scenario.name: (scenario, results) for scenario, results in rows}
    out = []

    def check(ok: bool, text: str) -> None:
        out.append(f"{'met   ' if ok else 'MISSED'}  {text}")

    if "latency" in found:
        _, results = found["latency"]
        added = percentile(results["proxy"].latencies, 0.5) - percentile(results["direct"].latencies, 0.5)
        check(added < 0.002, f"added latency p50 under 2 ms for one client: {added * 1000:.2f} ms")
    if "throughput" in found:
        scenario, results = found["throughput"]
        rate = results["proxy"].rate
        check(rate >= 500, f"at least 500 non-streaming req/s at {scenario.clients} clients: {rate:.0f}")
        # Load spread evenly over the workers keeps the slowest requests near the typical one.
        p50, p99 = (percentile(results["proxy"].latencies, q) for q in (0.5, 0.99))
        check(
            p99 <= 5 * p50,
            f"p99 at most 5 times p50 at {scenario.clients} clients: p99 {p99 * 1000:.1f} ms, "
            f"p50 {p50 * 1000:.1f} ms ({p99 / p50:.1f} times)",
        )
    if "latency" in found and "latency-fallback" in found:
        hit, fallback = (
            percentile(found[name][1]["proxy"].latencies, 0.5) for name in ("latency", "latency-fallback")
        )
        check(
            fallback - hit < 0.002,
            "a fallback (first deployment 503) adds under 2 ms to a direct hit: "
            f"{(fallback - hit) * 1000:+.2f} ms",
        )
    # The shared store against the same proxy counting in each process: what the store adds.
    if "latency-store" in found:
        _, results = found["latency-store"]
        local, shared = (percentile(results[path].latencies, 0.5) for path in ("limits", "store"))
        check(
            shared - local <= 0.0005,
            f"the shared store adds at most 0.5 ms to the added p50: {(shared - local) * 1000:+.2f} ms",
        )
    if "throughput-store" in found:
        _, results = found["throughput-store"]
        without, with_store = results["limits"].rate, results["store"].rate
        check(
            with_store >= 0.7 * without,
            f"throughput at 50 clients with the shared store at least 70 % of without: "
            f"{with_store:.0f} of {without:.0f} req/s ({with_store / without:.0%})",
        )
    if "streams" in found:
        scenario, results = found["streams"]
        proxy = results["proxy"]
        check(
            proxy.done == scenario.clients and proxy.error_count == 0,
            f"{scenario.clients} concurrent streams with no error: {proxy.done} completed, "
            f"{proxy.error_count} errors",
        )
    # The target is in MB (10^6 bytes); /proc counts KiB, the figures above are MiB.
    gateway = [peaks[s.name] for s, _ in rows if not s.bedrock and s.name in peaks]
    if gateway and len(gateway) < len(peaks):
        # Bedrock loads boto3 and its service models into the workers: the gateway's own figure too.
        peak = max(gateway)
        check(peak * MB_PER_MIB < 150, f"proxy RSS under 150 MB over the OpenAI scenarios: {megabytes(peak)}")
    check(rss * MB_PER_MIB < 150, f"proxy RSS under 150 MB over every scenario run: {megabytes(rss)}")
    return out


MB_PER_MIB = 2**20 / 10**6


def megabytes(mebibytes: float) -> str:
    return f"{mebibytes:.0f} MiB ({mebibytes * MB_PER_MIB:.0f} MB)"


def log_problems(log: str) -> collections.Counter:
    """WARNING and worse lines of the proxy's log, by message (request ids and times dropped)."""
    found: collections.Counter = collections.Counter()
    for line in log.splitlines():
        match = re.search(r" (WARNING|ERROR|CRITICAL) \[[^\]]*\] (.*)", line)
        if match:
            found[f"{match.group(1)} {match.group(2)[:160]}"] += 1
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    names = [
        "latency",
        "throughput",
        "stream-throughput",
        "streams",
        "latency-fallback",
        "latency-store",
        "throughput-store",
        "bedrock",
        "bedrock-stream",
    ]
    parser.add_argument("--scenario", action="append", choices=names, help="run only these (repeatable)")
    parser.add_argument("--clients", type=int, help="concurrent clients (overrides each scenario's own)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per timed run")
    parser.add_argument("--requests", type=int, default=500, help="requests in the latency scenario")
    parser.add_argument("--delay", type=float, default=0.01, help="upstream delay (s), latency scenario")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="one-client scenarios and throughput-store: alternate the paths in N rounds",
    )
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams in 'streams'")
    parser.add_argument("--stream-seconds", type=float, default=10.0, help="length of each long stream")
    parser.add_argument("--workers", type=int, default=2, help="proxy server processes (AIPROXY_WORKERS)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    chosen = [s for s in scenarios(args) if not args.scenario or s.name in args.scenario]

    upstream_port = free_port()
    bedrock_port = free_port()
    load_before = os.getloadavg()[0]
    print(
        f"AI Proxy benchmark on {platform.node()} ({platform.machine()}, "
        f"Python {platform.python_version()}); proxy workers: {args.workers}",
        file=sys.stderr,
    )
    rows = []
    peaks: dict[str, float] = {}  # the proxy's peak RSS so far, after each scenario
    started = time.monotonic()
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    with (
        fake_process("testbed.openai_upstream", free_port(), fail=503) as failing_url,
        proxy_server(
            upstream_url,
            args.workers,
            extra={**bedrock.proxy_settings(bedrock_port), **fallback_settings(failing_url)},
        ) as proxy,
        contextlib.ExitStack() as later,
    ):
        idle_rss = current_rss_mib(proxy.process.pid)

        def proxy_cpu() -> float:
            return cpu_seconds(proxy.process.pid)

        limited: dict[str, RunningServer] = {}  # the limits scenarios' proxies, started when first used
        for scenario in chosen:
            print(f"{scenario.name}: {scenario.description}", file=sys.stderr, flush=True)
            if scenario.bedrock:
                rows.append((scenario, bedrock.run_scenario(scenario, proxy.url, proxy_cpu, bedrock_port)))
            elif scenario.limits:
                if not limited:
                    for path in ("limits", "store"):
                        limited[path] = later.enter_context(
                            store.limited_proxy(upstream_url, args.workers, shared=path == "store")
                        )
                rows.append((scenario, run_scenario(scenario, limited, upstream_port)))
            else:
                rows.append((scenario, run_scenario(scenario, {"proxy": proxy}, upstream_port)))
            peaks[scenario.name] = peak_rss_mib(proxy.process.pid)
        rss = peak_rss_mib(proxy.process.pid)
        problems = log_problems(proxy.log())
    print()
    print(table(rows, rss))
    so_far = ", ".join(f"{name} {mib:.0f}" for name, mib in peaks.items())
    print(f"Proxy peak RSS so far (MiB), after each scenario: {so_far}")
    print(
        f"Proxy RSS when idle after start-up: {idle_rss:.0f} MiB; "
        f"total run {time.monotonic() - started:.0f} s"
    )
    # Other work on the machine skews every figure: say how busy it was.
    print(f"Load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    if problems:
        print("Proxy log warnings and errors (most frequent first):")
        print("\n".join(f"  {count} x {text}" for text, count in problems.most_common(5)))
    print()
    print("\n".join(verdicts(rows, rss, peaks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench`: start an upstream and the proxy, load both, print a table.

Every scenario runs the same load twice: straight at the upstream ("direct") and through the
proxy ("proxy"); the difference is what the proxy adds. Everything runs on 127.0.0.1, and every
loop stops by itself (a duration or a fixed number of requests). The default scenarios, the four
points (chat-1, chat-50, stream-1, stream-50), use nginx as the upstream (bench/nginx.py) and wrk
as the load (bench/wrk.py) when they are installed, so that the proxy is the bottleneck; the
others use the Python fake and aiohttp clients.

    python -m bench                              # the points (chat-1 ... key-1, cache-hit), 10 s each
    python -m bench --baseline main~3            # ... beside an older commit's proxy
    python -m bench --all                        # every scenario, about five minutes
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
from collections.abc import Callable
from dataclasses import dataclass

from bench import baseline, bedrock, nginx, safety, store, wrk
from bench.load import LoadResult, measure, percentile
from bench.processes import (
    cpu_seconds,
    current_rss_mib,
    fake_process,
    fake_upstream,
    free_port,
    peak_pss,
    peak_rss_mib,
    proxy_server,
    proxy_settings,
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
    # Three proxies whose client has no safety policy, blocklist and PII, and those with a judge
    # (bench/safety.py).
    safety: bool = False
    model: str = "gpt-4o-mini"  # "fallback": a model group whose first deployment always answers 503
    # One of the points: nginx as the upstream and wrk as the load, when installed.
    point: bool = False
    # The answer cache's point: proxies whose client caches answers, in the process and in Redis.
    cache: bool = False
    # The client key's point: proxies (and the baseline's) whose only feature is the load's key.
    keyed: bool = False


POINTS = ("chat-1", "chat-50", "stream-1", "stream-50")


def points(args: argparse.Namespace) -> list[Scenario]:
    """Whole and streamed chats (6 events) at 1 and 50 clients, `--point-seconds` each a path."""
    return [
        Scenario(
            f"{kind}-{clients}",
            f"{clients} client{'s' if clients > 1 else ''}, {'streamed' if stream else 'whole'} chat, "
            f"{args.point_seconds:g} s a path in {args.point_rounds} rounds",
            clients=clients,
            stream=stream,
            stream_chunks=2,  # the Python fake's stream then has nginx's 6 events
            duration=args.point_seconds,
            rounds=args.point_rounds,
            point=True,
        )
        for kind, stream in (("chat", False), ("stream", True))
        for clients in (1, 50)
    ]


def feature_point(args: argparse.Namespace, name: str, what: str, **feature: bool) -> Scenario:
    """A whole chat from 1 client through proxies with one feature on (`feature`: the Scenario
    flag that picks them), `--point-seconds` a path."""
    return Scenario(
        name,
        f"1 client, {what}, {args.point_seconds:g} s a path",
        clients=1,
        stream=False,
        duration=args.point_seconds,
        rounds=args.point_rounds,
        point=True,
        **feature,
    )


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    chunks = 10
    return [
        *points(args),
        # `chat-1` with a client key and no other feature (no limits, policy or cache): what a key costs.
        feature_point(args, "key-1", "whole chat, with a client key and no other feature", keyed=True),
        # The same chat again and again: every answer after the first from the cache.
        feature_point(args, "cache-hit", "the same whole chat: answered from the answer cache", cache=True),
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
            "latency-safety",
            "as latency, the client with no safety policy, blocklist and PII, and those with a judge",
            clients=args.clients or 1,
            stream=False,
            delay=args.delay,
            count=args.requests,
            rounds=args.rounds,
            safety=True,
        ),
        Scenario(
            "stream-safety",
            "1 client, streamed chat, the same three policies (output checked in segments)",
            clients=args.clients or 1,
            stream=True,
            delay=args.delay,
            count=args.requests,
            rounds=args.rounds,
            safety=True,
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
    """Milliseconds; to 0.01 ms under 10 ms, where a regression of 0.1 ms has to show."""
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.2f}" if abs(seconds) < 0.01 else f"{seconds * 1000:.1f}"


@dataclass
class Tools:
    """What the points run on: nginx or the Python fake, wrk or aiohttp."""

    nginx: bool
    wrk: bool
    wrk_threads: int = 1

    def describe(self) -> str:
        upstream = "nginx (bench/nginx.py)" if self.nginx else "the Python fake (nginx not found)"
        load = f"wrk, {self.wrk_threads} thread(s)" if self.wrk else "aiohttp clients (wrk not found)"
        return f"the points: upstream {upstream}, load {load}"


def run_scenario(
    scenario: Scenario, proxies: dict[str, RunningServer], upstream_port: int, tools: Tools | None = None
) -> dict[str, LoadResult]:
    """`scenario` straight at the upstream ("direct") and through each of `proxies` (path ->
    server). The upstream is nginx for the points when `tools` says so, else the Python fake;
    either listens on `upstream_port`, where the proxies send."""
    runner: Callable[..., LoadResult] | None = None
    if scenario.point and tools and tools.wrk:
        runner = functools.partial(wrk.run_wrk, threads=tools.wrk_threads)
    if scenario.point and tools and tools.nginx:
        upstream = nginx.nginx_upstream(upstream_port)
    else:
        upstream = fake_upstream(
            upstream_port,
            delay=scenario.delay,
            stream_pause=scenario.stream_pause,
            stream_chunks=scenario.stream_chunks,
        )
    with upstream as upstream_url:
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
        return measure(scenario, targets, warm_body=warm_body, cpu_clocks=clocks, runner=runner)


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
    if "latency-safety" in found:
        _, results = found["latency-safety"]
        plain, checked, judged = (percentile(results[p].latencies, 0.5) for p in safety.PATHS)
        check(
            checked - plain < 0.0003,
            f"a blocklist-and-PII policy adds under 0.3 ms at the median: {(checked - plain) * 1000:+.2f} ms "
            f"(with a judge: {(judged - plain) * 1000:+.2f} ms)",
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


def point_verdicts(rows: list[tuple[Scenario, dict[str, LoadResult]]], pss: dict[str, float]) -> list[str]:
    """The points' checks (issue 27), and the PSS target."""
    out = []

    def check(ok: bool, text: str) -> None:
        out.append(f"{'met   ' if ok else 'MISSED'}  {text}")

    found = {scenario.name: results for scenario, results in rows if scenario.point}
    for name, results in found.items():
        errors = {path: result.error_count for path, result in results.items() if path != "direct"}
        counts = ", ".join(f"{path} {count}" for path, count in errors.items())
        check(not any(errors.values()), f"{name}: no errors ({counts})")
    for name in ("chat-50", "stream-50"):
        if name in found:
            p50, p99 = (percentile(found[name]["proxy"].latencies, q) or 0.0 for q in (0.5, 0.99))
            check(
                p99 <= 5 * p50,
                f"{name}: p99 at most 5 times p50: p99 {p99 * 1000:.1f} ms, p50 {p50 * 1000:.1f} ms",
            )
    if "stream-50" in found and "baseline" in found["stream-50"]:
        old, new = found["stream-50"]["baseline"].rate, found["stream-50"]["proxy"].rate
        check(new >= old, f"stream-50: at least the baseline's rate: {new:,.0f}/s against {old:,.0f}/s")
    # A whole chat at one client, without a key and with one: added p50 at most the baseline's + 0.05 ms.
    for name, what in (("chat-1", "added p50"), ("key-1", "a request with a client key adds")):
        if name in found and "baseline" in found[name]:
            results = found[name]
            direct = percentile(results["direct"].latencies, 0.5)
            old, new = (percentile(results[path].latencies, 0.5) - direct for path in ("baseline", "proxy"))
            check(
                new <= old + 0.00005,
                f"{name}: {what} at most the baseline's + 0.05 ms: {new * 1000:.3f} ms against "
                f"{old * 1000:.3f} ms",
            )
    for path, result in found.get("cache-hit", {}).items():
        if path != "direct":  # the answer cache (issue 32): a hit in under 1 ms at the median
            p50 = percentile(result.latencies, 0.5) or 0.0
            check(p50 < 0.001, f"cache-hit: {path} answers a hit in under 1 ms at p50: {p50 * 1000:.2f} ms")
    for path, mib in pss.items():
        check(mib * MB_PER_MIB < 100, f"{path} PSS while serving under 100 MB: {megabytes(mib)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    names = [
        *POINTS,
        "key-1",
        "cache-hit",
        "latency",
        "throughput",
        "stream-throughput",
        "streams",
        "latency-fallback",
        "latency-store",
        "throughput-store",
        "latency-safety",
        "stream-safety",
        "bedrock",
        "bedrock-stream",
    ]
    parser.add_argument("--scenario", action="append", choices=names, help="run only these (repeatable)")
    parser.add_argument("--all", action="store_true", help="run every scenario (default: the points)")
    parser.add_argument(
        "--baseline",
        metavar="COMMIT",
        help="also run that commit's proxy (in a temporary git worktree), interleaved, side by side",
    )
    parser.add_argument("--point-seconds", type=int, default=10, help="seconds a path of each point")
    parser.add_argument("--no-nginx", action="store_true", help="the points' upstream: the Python fake")
    parser.add_argument("--no-wrk", action="store_true", help="the points' load: aiohttp clients")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk's threads (each a core)")
    parser.add_argument("--clients", type=int, help="concurrent clients (overrides each scenario's own)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per timed run")
    parser.add_argument("--requests", type=int, default=500, help="requests in the latency scenario")
    parser.add_argument("--delay", type=float, default=0.01, help="upstream delay (s), latency scenario")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="the points, one-client scenarios and throughput-store: alternate the paths in N rounds",
    )
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams in 'streams'")
    parser.add_argument("--stream-seconds", type=float, default=10.0, help="length of each long stream")
    parser.add_argument("--workers", type=int, default=2, help="proxy server processes (AIPROXY_WORKERS)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.point_seconds < 1:
        parser.error("--point-seconds must be at least 1")
    if args.baseline and not baseline.resolve(args.baseline):
        parser.error(f"--baseline: {args.baseline!r} is not a commit of this repository")
    # wrk runs for whole seconds: the points' rounds divide their seconds.
    args.point_rounds = max(r for r in range(1, args.rounds + 1) if args.point_seconds % r == 0)
    chosen = [
        s for s in scenarios(args) if (s.name in args.scenario if args.scenario else args.all or s.point)
    ]
    tools = Tools(
        nginx=nginx.available() and not args.no_nginx,
        wrk=wrk.available() and not args.no_wrk,
        wrk_threads=args.wrk_threads,
    )

    upstream_port = free_port()
    bedrock_port = free_port()
    load_before = os.getloadavg()[0]
    print(
        f"AI Proxy benchmark on {platform.node()} ({platform.machine()}, "
        f"Python {platform.python_version()}); proxy workers: {args.workers}; {tools.describe()}",
        file=sys.stderr,
    )
    rows = []
    peaks: dict[str, float] = {}  # the proxy's peak RSS so far, after each scenario
    started = time.monotonic()
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    with (
        fake_process("testbed.openai_upstream", free_port(), fail=503) as failing_url,
        contextlib.ExitStack() as later,
    ):
        extra = {**bedrock.proxy_settings(bedrock_port), **fallback_settings(failing_url)}
        proxy = later.enter_context(proxy_server(upstream_url, args.workers, extra=extra))
        compared: dict[str, RunningServer] = {}  # the baseline's proxy, when asked for
        if args.baseline:
            tree = later.enter_context(baseline.worktree(args.baseline))
            # Only the plain OpenAI settings: an older proxy may refuse the fallback group's.
            settings = proxy_settings(upstream_url, args.workers)
            compared["baseline"] = later.enter_context(baseline.baseline_proxy(tree, settings))
            print(f"baseline: {baseline.describe(args.baseline)}", file=sys.stderr)
        idle_rss = current_rss_mib(proxy.process.pid)
        servers = {"proxy": proxy, **compared}
        pss = later.enter_context(peak_pss({name: server.process.pid for name, server in servers.items()}))

        def proxy_cpu() -> float:
            return cpu_seconds(proxy.process.pid)

        limited: dict[str, RunningServer] = {}  # the limits scenarios' proxies, started when first used
        checked: dict[str, RunningServer] = {}  # the safety scenarios' proxies, likewise
        cached: dict[str, RunningServer] = {}  # the cache-hit point's proxies
        keyed: dict[str, RunningServer] = {}  # the key-1 point's proxy, and the baseline's likewise
        for scenario in chosen:
            print(f"{scenario.name}: {scenario.description}", file=sys.stderr, flush=True)
            if scenario.bedrock:
                rows.append((scenario, bedrock.run_scenario(scenario, proxy.url, proxy_cpu, bedrock_port)))
            elif scenario.safety:
                if not checked:
                    checked.update(later.enter_context(safety.safety_proxies(upstream_url, args.workers)))
                rows.append((scenario, run_scenario(scenario, checked, upstream_port)))
            elif scenario.limits:
                if not limited:
                    for path in ("limits", "store"):
                        limited[path] = later.enter_context(
                            store.limited_proxy(upstream_url, args.workers, shared=path == "store")
                        )
                rows.append((scenario, run_scenario(scenario, limited, upstream_port)))
            elif scenario.keyed:
                if not keyed:
                    keyed["proxy"] = later.enter_context(
                        proxy_server(upstream_url, args.workers, extra=store.key_only())
                    )
                    if args.baseline:
                        settings = proxy_settings(upstream_url, args.workers, store.key_only())
                        keyed["baseline"] = later.enter_context(baseline.baseline_proxy(tree, settings))
                rows.append((scenario, run_scenario(scenario, keyed, upstream_port, tools)))
            elif scenario.cache:
                for path in ("cache", "cache-store"):
                    cached[path] = later.enter_context(
                        store.cached_proxy(upstream_url, args.workers, shared=path == "cache-store")
                    )
                rows.append((scenario, run_scenario(scenario, cached, upstream_port, tools)))
            else:
                # The baseline is measured where it knows the request: not the fallback's model group.
                both = {**compared, "proxy": proxy} if scenario.model != FALLBACK_MODEL else {"proxy": proxy}
                rows.append((scenario, run_scenario(scenario, both, upstream_port, tools)))
            peaks[scenario.name] = peak_rss_mib(proxy.process.pid)
        rss = peak_rss_mib(proxy.process.pid)
        problems = log_problems(proxy.log())
        pss = dict(pss)
    print()
    print(table(rows, rss))
    so_far = ", ".join(f"{name} {mib:.0f}" for name, mib in peaks.items())
    print(f"Proxy peak RSS so far (MiB), after each scenario: {so_far}")
    print(
        f"Proxy RSS when idle after start-up: {idle_rss:.0f} MiB; "
        f"total run {time.monotonic() - started:.0f} s"
    )
    print(
        "Proxy PSS while serving (master + workers, shared pages counted once; the peak of samples "
        "every 0.5 s; target < 100 MB): " + ", ".join(f"{name} {megabytes(mib)}" for name, mib in pss.items())
    )
    if compared:
        print()
        print(f"Side by side (baseline: {baseline.describe(args.baseline)}; current: this tree):")
        print(baseline.side_by_side([(scenario.name, results) for scenario, results in rows]))
    # Other work on the machine skews every figure: say how busy it was.
    print(f"Load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    if problems:
        print("Proxy log warnings and errors (most frequent first):")
        print("\n".join(f"  {count} x {text}" for text, count in problems.most_common(5)))
    print()
    print("\n".join(point_verdicts(rows, pss) + verdicts(rows, rss, peaks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

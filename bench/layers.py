"""`python -m bench.layers`: where the proxy's added latency goes, one layer of its stack at a time.

The latency scenario of `python -m bench` (one client, the fake upstream answering after a fixed
delay) is run against stand-ins that each add one layer of the proxy's stack (bench/layer_apps.py)
and against the proxy itself, all with one server process. Rounds are interleaved so every
target sees the same machine; each round measures the direct path too, and the table shows the
median over rounds of p50(target) - p50(direct), and what each row adds to the one it is built
on; and the same for the CPU time the row's server processes spent per request (from /proc).

The `flask` row is not in the proxy's stack: it is what serving the relay routes through Flask
would add on top of the pool, which is why they are served outside it (service/relay.py).

    python -m bench.layers                       # 8 rounds of 300 requests, about two minutes
    python -m bench.layers --rounds 3 --requests 100 --delay 0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field

from bench.load import percentile, run_load
from bench.processes import cpu_seconds, fake_upstream, free_port, proxy_server, started_process
from testbed.server import GUNICORN, RunningServer, running_server

# (name, the row it is built on, what it adds to that row)
LAYERS = [
    ("relay", None, "a second process and two more socket hops (bytes relayed, no HTTP)"),
    ("gunicorn", "relay", "gunicorn's gevent worker: HTTP parsing, WSGI, the answer written"),
    (
        "pool",
        "gunicorn",
        "the upstream pool (service/gateway/providers/http_pool.py): HTTP client, answer parsed",
    ),
    ("flask", "pool", "Flask: request context, routing, Request and Response objects (not in the proxy)"),
    ("proxy", "pool", "the proxy: request pipeline (id, key, limits, access line), validation, usage"),
]
_GUNICORN_APPS = {"gunicorn": "plain_app", "pool": "pool_app", "flask": "flask_app"}
_BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Write one sentence about the sea."}]}
).encode()


def _gunicorn(app: str, upstream_url: str) -> AbstractContextManager[RunningServer]:
    port = free_port()
    command = [GUNICORN, "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
    settings = {"PORT": str(port), "UPSTREAM_URL": upstream_url}
    return running_server(settings, command=[*command, f"bench.layer_apps:{app}"])


def _target(stack: ExitStack, layer: str, upstream_url: str) -> tuple[str, int]:
    """Start `layer`'s server; return the URL the load goes to and the server's pid."""
    if layer == "relay":
        relay = stack.enter_context(started_process("bench.layer_apps", free_port(), upstream=upstream_url))
        base, pid = relay.url, relay.pid
    else:
        server = (
            proxy_server(upstream_url, 1)
            if layer == "proxy"
            else _gunicorn(_GUNICORN_APPS[layer], upstream_url)
        )
        running = stack.enter_context(server)
        base, pid = running.url, running.process.pid
    return base + "/v1/chat/completions", pid


@dataclass
class LayerFigures:
    added: list[float] = field(default_factory=list)  # seconds, p50(layer) - p50(direct), per round
    cpu: list[float] = field(default_factory=list)  # the server's CPU seconds per request, per round


def measure_layers(rounds: int, requests: int, delay: float) -> dict[str, LayerFigures]:
    """Added latency and CPU time per request of every layer, in each round."""
    figures = {name: LayerFigures() for name, _, _ in LAYERS}
    with fake_upstream(free_port(), delay=delay) as upstream_url, ExitStack() as stack:
        targets = {name: _target(stack, name, upstream_url) for name, _, _ in LAYERS}
        direct = upstream_url + "/chat/completions"
        for url in [direct, *(url for url, _ in targets.values())]:
            errors = run_load(url, _BODY, clients=1, count=50).errors
            if errors:
                raise RuntimeError(f"{url} failed while warming up: {dict(errors)}")
        for number in range(rounds):
            print(f"  round {number + 1} of {rounds}", file=sys.stderr, flush=True)
            baseline = percentile(run_load(direct, _BODY, clients=1, count=requests).latencies, 0.5)
            order = list(targets.items())
            for name, (url, pid) in order if number % 2 == 0 else reversed(order):
                cpu_before = cpu_seconds(pid)
                result = run_load(url, _BODY, clients=1, count=requests)
                if result.errors:
                    raise RuntimeError(f"{name}: {dict(result.errors)}")
                figures[name].cpu.append((cpu_seconds(pid) - cpu_before) / requests)
                figures[name].added.append(percentile(result.latencies, 0.5) - baseline)
    return figures


def table(figures: dict[str, LayerFigures]) -> str:
    lines = [
        "| layer | added p50 ms (median of rounds) | on | this layer ms | CPU ms/req | this layer CPU ms "
        "| what it adds |",
        "|---" * 7 + "|",
    ]
    for name, base, description in LAYERS:
        added = statistics.median(figures[name].added)
        cpu = statistics.median(figures[name].cpu)
        base_added = statistics.median(figures[base].added) if base else 0.0
        base_cpu = statistics.median(figures[base].cpu) if base else 0.0
        lines.append(
            f"| {name} | {added * 1000:.2f} | {base or '-'} | {(added - base_added) * 1000:+.2f} "
            f"| {cpu * 1000:.2f} | {(cpu - base_cpu) * 1000:+.2f} | {description} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.layers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    parser.add_argument("--requests", type=int, default=300, help="requests per target and round")
    parser.add_argument("--delay", type=float, default=0.01, help="the fake upstream's delay (s)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    figures = measure_layers(args.rounds, args.requests, args.delay)
    print()
    print(f"One client, upstream delay {args.delay * 1000:g} ms, {args.rounds} rounds of {args.requests}:")
    print(table(figures))
    print(
        "CPU ms/req: user + system CPU time of the layer's server processes, per request (median of rounds)"
    )
    print(f"Load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

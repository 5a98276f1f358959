"""The benchmark commands run end to end (tiny loads: they check the tools work, not the figures)."""

import re
import subprocess
import sys

from testbed.server import ROOT


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_bench_latency_scenario_prints_its_table_and_verdict():
    out = run("bench", "--scenario", "latency", "--requests", "20", "--workers", "1")
    rows = {m[1]: m[2] for m in re.finditer(r"^\| latency \| (direct|proxy) \| 1 \| (\d+) \|", out, re.M)}
    assert rows == {"direct": "20", "proxy": "20"}
    # The last column: the proxy's CPU time per request, measured on the proxy's rows only.
    cpu = dict(re.findall(r"^\| latency \| (direct|proxy) \|.* \| ([-\d.]+) \|$", out, re.M))
    assert cpu["direct"] == "-"
    assert 0 < float(cpu["proxy"]) < 100
    verdict = r"^(met   |MISSED)  added latency p50 under 2 ms for one client: \d+\.\d\d ms$"
    assert re.search(verdict, out, re.M)


def test_bench_layers_measures_every_layer_of_the_stack():
    out = run("bench.layers", "--rounds", "1", "--requests", "20", "--delay", "0")
    rows = re.findall(
        r"^\| (\w+) \| -?\d+\.\d\d \| ([\w-]+) \| [+-]\d+\.\d\d \| (\d+\.\d\d) \| [+-]\d+\.\d\d \|",
        out,
        re.M,
    )
    assert [(layer, base) for layer, base, _ in rows] == [
        ("relay", "-"),
        ("gunicorn", "relay"),
        ("pool", "gunicorn"),
        ("flask", "pool"),  # for comparison: the relay routes skip Flask
        ("proxy", "pool"),
    ]
    # Every layer's server was busy relaying: some CPU time per request, under a second.
    assert all(0 < float(cpu) < 1000 for _, _, cpu in rows), rows

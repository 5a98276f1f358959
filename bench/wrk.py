"""The load generator in C: wrk (Debian's package) when installed, else bench/load.py's aiohttp.

aiohttp clients in Python cost as much CPU a request as the proxy does, on the same cores: wrk
sends tens of thousands of requests a second from one thread, so what is measured is the server.
A Lua script (generated per run) makes wrk POST the body with the proxy's headers, count
answers that are not 2xx and streams that do not end with `data: [DONE]`, and print, once done,
every latency it recorded (value in microseconds and how many times) so that runs in rounds merge
into exact percentiles, like bench/load.py's lists of latencies.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.load import LoadResult

WRK = "/usr/bin/wrk"

_SCRIPT = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-client"
local stream = %(stream)s
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  not_2xx = 0
  cut = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    not_2xx = not_2xx + 1
  elseif stream and not body:find("data: [DONE]", 1, true) then
    cut = cut + 1
  end
end

function done(summary, latency, requests)
  local not_2xx, cut = 0, 0
  for _, thread in ipairs(threads) do
    not_2xx = not_2xx + thread:get("not_2xx")
    cut = cut + thread:get("cut")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"not_2xx\\": %%d, \\"cut\\": %%d, "
    .. "\\"connect\\": %%d, \\"read\\": %%d, \\"write\\": %%d, \\"timeout\\": %%d}\\n",
    summary.requests, summary.duration, not_2xx, cut, e.connect, e.read, e.write, e.timeout))
  io.write("LATENCIES")
  for i = 1, #latency do
    local value, count = latency(i)
    io.write(string.format(" %%d:%%d", value, count))
  end
  io.write("\\n")
end
"""


def available() -> bool:
    return Path(WRK).is_file()


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII is a valid Lua string literal


def script(body: bytes, stream: bool) -> str:
    return _SCRIPT % {"body": _lua_string(body.decode("ascii")), "stream": "true" if stream else "false"}


def parse(output: str) -> LoadResult:
    """The LoadResult of one wrk run from what the script printed."""
    summary: dict | None = None
    latencies: list[float] = []
    for line in output.splitlines():
        if line.startswith("BENCH "):
            summary = json.loads(line.removeprefix("BENCH "))
        elif line.startswith("LATENCIES"):
            for pair in line.split()[1:]:
                value, count = pair.split(":")
                latencies += [int(value) / 1e6] * int(count)
    if summary is None:
        raise RuntimeError(f"wrk printed no summary: {output[-2000:]}")
    result = LoadResult(elapsed=summary["duration_us"] / 1e6)
    for name, label in (("not_2xx", "not 2xx"), ("cut", "stream ended without [DONE]")):
        if summary[name]:
            result.errors[label] += summary[name]
    for name in ("connect", "read", "write", "timeout"):
        if summary[name]:
            result.errors[f"socket {name}"] += summary[name]
    # The histogram holds the latency of every answer, failed ones too (there should be none),
    # and runs a little (under 1 %) over wrk's count of answers: it is thinned evenly (percentiles
    # unchanged) to as many values as there were good answers, so that counts and rates are wrk's.
    good = max(0, summary["requests"] - summary["not_2xx"] - summary["cut"])
    if len(latencies) > good:
        step = len(latencies) / good if good else 0
        latencies = [latencies[int(number * step)] for number in range(good)]
    result.latencies = latencies
    return result


def run_wrk(
    url: str,
    body: bytes,
    *,
    clients: int,
    stream: bool = False,
    duration: float | None = None,
    count: int | None = None,
    threads: int = 1,
) -> LoadResult:
    """`clients` connections sending `body` to `url` back to back for `duration` seconds (whole
    seconds: wrk's unit; at least 1). The arguments of bench.load.run_load, but wrk only runs
    for a time, never for a number of requests."""
    if duration is None or count is not None:
        raise ValueError("wrk runs for a duration, not a number of requests")
    seconds = max(1, math.ceil(duration - 1e-9))
    folder = Path(tempfile.mkdtemp(prefix="bench-wrk-"))
    try:
        lua = folder / "post.lua"
        lua.write_text(script(body, stream))
        command = [
            WRK,
            f"--threads={max(1, min(threads, clients))}",
            f"--connections={clients}",
            f"--duration={seconds}s",
            "--timeout=30s",
            f"--script={lua}",
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
        return parse(done.stdout)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["available", "parse", "run_wrk", "script"]

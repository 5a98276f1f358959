"""The processes a benchmark runs: the fake upstream (its own process) and the real proxy server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from testbed.server import ROOT, RunningServer, free_port, running_server, stop_process


@dataclass
class StartedProcess:
    url: str
    pid: int


@contextmanager
def started_process(module: str, port: int, **options: object) -> Iterator[StartedProcess]:
    """Run `module` (a fake in testbed/, or the bench's byte relay) in its own process on
    `port`, each option as `--name value`; yield the URL it prints in its `ready <url>` line, and
    its pid."""
    command = [sys.executable, "-m", module, "--port", str(port)]
    for name, value in options.items():
        command += ["--" + name.replace("_", "-"), str(value)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = process.stdout.readline().strip()
        if not line.startswith("ready "):
            raise RuntimeError(f"{module} did not start: {line!r}")
        yield StartedProcess(line.removeprefix("ready "), process.pid)
    finally:
        stop_process(process, timeout=15)


@contextmanager
def fake_process(module: str, port: int, **options: object) -> Iterator[str]:
    """`started_process`, yielding only the URL."""
    with started_process(module, port, **options) as started:
        yield started.url


def fake_upstream(
    port: int, *, delay: float = 0.0, stream_pause: float = 0.0, stream_chunks: int = 5
) -> AbstractContextManager[str]:
    """Run testbed/openai_upstream.py in its own process on `port`; yield its base URL."""
    return fake_process(
        "testbed.openai_upstream",
        port,
        delay=delay,
        stream_pause=stream_pause,
        stream_chunks=stream_chunks,
    )


def proxy_settings(upstream_url: str, workers: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The benchmarked proxy's whole configuration."""
    return {
        "OPENAI_BASE_URL": upstream_url,
        "OPENAI_API_KEY": "sk-bench-provider-key",
        "AIPROXY_WORKERS": str(workers),
        "LOG_FORMAT": "json",  # as deployed (infra_cdk/service_stack.py)
        **(extra or {}),
    }


@contextmanager
def proxy_server(
    upstream_url: str, workers: int, extra: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    with running_server(proxy_settings(upstream_url, workers, extra)) as server:
        yield server


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (the gunicorn master and its workers)."""
    found = [pid]
    for current in found:
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        found.extend(int(child) for child in children)
    return found


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mib(pid: int) -> float:
    """Sum of each process's peak resident memory (VmHWM) over the server's process tree."""
    return sum(_status_kib(p, "VmHWM") for p in process_tree(pid)) / 1024


def current_rss_mib(pid: int) -> float:
    return sum(_status_kib(p, "VmRSS") for p in process_tree(pid)) / 1024


def pss_mib(pid: int) -> float:
    """The server's proportional set size: the sum of `Pss` of its processes (smaps_rollup), in
    which a page shared by the master and its forked workers counts once in all (each process a
    share of it), where the sum of their RSS counts it in every process."""
    kib = 0
    for process in process_tree(pid):
        try:
            for line in Path(f"/proc/{process}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    kib += int(line.split()[1])
                    break
        except OSError:
            continue  # a worker that has just ended
    return kib / 1024


@contextmanager
def peak_pss(pids: dict[str, int], every: float = 0.5) -> Iterator[dict[str, float]]:
    """Sample `pss_mib` of each server (name -> master's pid) every `every` seconds in a thread
    while the block runs; the yielded dict holds each one's peak so far, in MiB."""
    peaks = {name: pss_mib(pid) for name, pid in pids.items()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            for name, pid in pids.items():
                peaks[name] = max(peaks[name], pss_mib(pid))

    thread = threading.Thread(target=sample, name="pss-sampler", daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) used so far by every live thread of the server's process tree.

    Read from each thread's schedstat, in nanoseconds: /proc/PID/stat counts in clock ticks
    (10 ms), too coarse for a few hundred requests of a millisecond each.
    """
    nanoseconds = 0
    for process in process_tree(pid):
        try:
            threads = os.listdir(f"/proc/{process}/task")
        except OSError:
            continue
        for thread in threads:
            try:
                nanoseconds += int(Path(f"/proc/{process}/task/{thread}/schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue  # the thread has just ended
    return nanoseconds / 1e9


__all__ = [
    "cpu_seconds",
    "current_rss_mib",
    "fake_upstream",
    "free_port",
    "peak_pss",
    "peak_rss_mib",
    "proxy_server",
    "proxy_settings",
    "pss_mib",
    "started_process",
]

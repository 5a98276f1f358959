"""Start the real server process (gunicorn, as `make run` does) on a free port for a test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
# The start command of `make run` and of the Dockerfile (tests check the three agree).
SERVER_ARGS = ("--config", "python:service.server.config", "service:create_app()")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    log_path: Path
    final_log: str | None = None  # kept once the server stopped and its folder is gone

    def log(self) -> str:
        if self.final_log is not None:
            return self.final_log
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict]:
        """The JSON lines of the log (LOG_FORMAT=json), parsed."""
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM `process`; after `timeout` seconds, SIGKILL its whole session (it was started with
    start_new_session=True, so that reaches the children it started too)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "/", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not answer within {timeout}s:\n{log_path.read_text()}")


def server_env(settings: Mapping[str, str], port: int) -> dict[str, str]:
    """A clean environment: the test's settings only, never the developer's own keys."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "AIPROXY_WORKERS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(settings)
    return env


@contextmanager
def running_server(
    settings: Mapping[str, str] | None = None,
    args: Sequence[str] = SERVER_ARGS,
    command: Sequence[str] | None = None,
    cwd: Path | None = None,
) -> Iterator[RunningServer]:
    """Run the server with `settings` as its whole configuration; stop it (SIGTERM) afterwards.

    It runs from an empty directory unless `cwd` is given, so a developer's config.txt never
    leaks into a test.
    """
    settings = dict(settings or {})
    port = int(settings.get("PORT") or free_port())
    env = server_env(settings, port)
    env.setdefault("PYTHONPATH", str(ROOT))  # a test may set its own (an image-like install)
    with tempfile.TemporaryDirectory() as workdir:
        log_path = Path(workdir) / "server.log"
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(
                list(command or [GUNICORN, *args]),
                cwd=cwd or workdir,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            server = RunningServer(f"http://127.0.0.1:{port}", process, log_path)
            try:
                wait_until_up(server.url, process, log_path)
                yield server
            finally:
                stop_process(process, timeout=40)
                server.final_log = server.log()

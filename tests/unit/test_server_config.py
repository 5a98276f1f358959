"""The gunicorn configuration module, as the master process loads it."""

import subprocess
import sys

from testbed.server import ROOT


def run_in_master_like_process(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd="/",
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_master_never_loads_the_apps_libraries():
    # The master only reads configuration; keeping the app's imports out of it saves memory in
    # every task (the benchmark's RSS budget counts the master too).
    loaded = run_in_master_like_process(
        "import sys, service.server.config\n"
        "app_libraries = ('flask', 'urllib3', 'httptools', 'geventhttpclient', 'boto3')\n"
        "print(sorted(m for m in app_libraries if m in sys.modules))"
    )
    assert loaded == "[]"


def test_server_settings_follow_the_configuration():
    printed = run_in_master_like_process(
        "import service.server.config as s\n"
        "print(s.bind, s.workers, s.worker_connections, s.graceful_timeout, s.worker_class)",
        HOST="0.0.0.0",
        PORT="8080",
        AIPROXY_WORKERS="3",
        AIPROXY_WORKER_CONNECTIONS="500",
        AIPROXY_GRACEFUL_TIMEOUT="12",
    )
    # service.server.worker.ProxyWorker is gunicorn's gevent worker with the hostile-traffic defences.
    assert printed == "['0.0.0.0:8080'] 3 500 12 service.server.worker.ProxyWorker"

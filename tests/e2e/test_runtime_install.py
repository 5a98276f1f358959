"""The runtime install alone is enough to serve: a new venv gets only what the Docker image installs
(the lock file, nothing from the dev requirements), holds only what the image copies, and starts
with the image's command (the same as `make run`'s)."""

import ast
import json
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from testbed.server import ROOT, running_server
from tests.e2e.test_container_command import image_env, in_build_context, instructions


def _install_commands() -> list[list[str]]:
    return [shlex.split(run) for run in instructions("RUN") if run.startswith("pip install")]


def test_the_lock_file_pins_every_runtime_dependency():
    lock = (ROOT / "requirements.txt").read_text()
    pins = [line.split()[0] for line in lock.splitlines() if line and not line.startswith(("#", " "))]
    assert pins and all("==" in pin for pin in pins)
    names = {pin.split("==")[0] for pin in pins}
    # gunicorn's gevent worker imports `packaging`: the dependency a fresh `make run` was missing.
    assert {"gunicorn", "gevent", "packaging", "greenlet", "flask"} <= names
    assert _install_commands() == [["pip", "install", "--no-deps", "-r", "requirements.txt"]]


@pytest.mark.timeout(600)
def test_a_venv_from_the_runtime_lock_alone_serves(tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    app = tmp_path / "app"  # what the image holds: the lock file and the service package
    app.mkdir()
    shutil.copy(ROOT / "requirements.txt", app)

    def left_out(folder: str, names: list[str]) -> list[str]:
        where = Path(folder).relative_to(ROOT)
        return [name for name in names if not in_build_context((where / name).as_posix())]

    shutil.copytree(ROOT / "service", app / "service", ignore=left_out)
    for command in _install_commands():
        subprocess.run([str(venv / "bin" / "python"), "-m", *command], cwd=app, check=True, timeout=500)
    # The lock file is complete: what it installed (without dependencies) needs nothing else.
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "check"], check=True, timeout=60)
    # A server with a store loads redis-py and the store's Lua scripts (files, read at import).
    store = "import service.governance.shared_limits, service.gateway.shared_cooldowns, service.store.client"
    subprocess.run([str(venv / "bin" / "python"), "-c", store], cwd=app, check=True, timeout=60)
    # Every library the service imports anywhere, those imported only when a feature is used too
    # (Vertex's `requests` transport, say): the dev venv has them all, a fresh install must as well.
    libraries = "import " + ", ".join(sorted(third_party_imports(ROOT / "service")))
    subprocess.run([str(venv / "bin" / "python"), "-c", libraries], cwd=app, check=True, timeout=60)

    [cmd] = instructions("CMD")
    args = json.loads(cmd)
    env = {k: v for k, v in image_env().items() if k not in ("HOST", "PORT")}
    env["PYTHONPATH"] = ""  # the image's working directory only, not this checkout
    gunicorn = [str(venv / "bin" / args[0]), *args[1:]]
    with (
        running_server(env, command=gunicorn, cwd=app) as server,
        urllib.request.urlopen(server.url + "/", timeout=5) as response,
    ):
        assert response.status == 200
        assert response.read() == b"AI Proxy is running.\n"
    assert "gevent" in server.log()


def third_party_imports(package: Path) -> set[str]:
    """The modules outside the standard library that `package` imports, at any depth of its code
    (imports for type checkers only left out)."""
    found: set[str] = set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return {
        name
        for name in found
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in ("service", "__future__")
    }

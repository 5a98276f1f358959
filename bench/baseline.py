"""`python -m bench --baseline COMMIT`: an older commit's proxy measured beside the current one.

The commit is checked out into a temporary git worktree (removed afterwards) and its server is
started exactly as that commit's own Makefile `run` target starts it, with this venv's gunicorn:
the gunicorn `--config python:...` module and the app have moved between commits (and will
again), so they are read from the baseline's Makefile rather than assumed. Both proxies then run
every point in the same session, interleaved (bench.load.measure), and each figure is printed
side by side with the difference.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.load import LoadResult, percentile
from testbed.server import ROOT, RunningServer, running_server


def resolve(commit: str) -> str | None:
    """`commit`'s full hash, or None when it names no commit of this repository."""
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", commit + "^{commit}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() if done.returncode == 0 else None


@contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """`commit` checked out (detached) into a temporary folder; the worktree removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    path = folder / "tree"
    done = subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise SystemExit(f"cannot check out the baseline {commit!r}: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def run_arguments(makefile: str) -> list[str]:
    """gunicorn's arguments in the Makefile's `run` target, e.g. ["--config",
    "python:service.server", "service:create_app()"]."""
    match = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, re.M)
    if match:
        for line in match.group(1).splitlines():
            words = shlex.split(line)
            for number, word in enumerate(words):
                if word.endswith("gunicorn"):
                    return words[number + 1 :]
    raise ValueError("the Makefile's run target starts no gunicorn")


@contextmanager
def baseline_proxy(tree: Path, settings: dict[str, str]) -> Iterator[RunningServer]:
    """The proxy of the checked-out `tree`, started as its `make run` does, with `settings`."""
    args = run_arguments((tree / "Makefile").read_text())
    # Its own code first on the path: the server runs from an empty folder, as the current one.
    with running_server({**settings, "PYTHONPATH": str(tree)}, args=args) as server:
        yield server


def describe(commit: str) -> str:
    done = subprocess.run(
        ["git", "log", "-1", "--format=%h %s", commit], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip()[:90].rstrip(":;,. ") or commit


def _figures(result: LoadResult, direct: LoadResult | None) -> dict[str, float | None]:
    p50 = percentile(result.latencies, 0.5)
    added = None
    if direct and direct.latencies and p50 is not None:
        added = p50 - percentile(direct.latencies, 0.5)
    return {
        "req/s": result.rate,
        "p50 ms": None if p50 is None else p50 * 1000,
        "p99 ms": None if not result.latencies else percentile(result.latencies, 0.99) * 1000,
        "added p50 ms": None if added is None else added * 1000,
        "errors": float(result.error_count),
        "CPU ms/req": None if result.cpu_per_request is None else result.cpu_per_request * 1000,
    }


def _number(value: float | None, name: str) -> str:
    if value is None:
        return "-"
    if name in ("req/s", "errors"):
        return f"{value:,.0f}"
    return f"{value:.2f}"


def side_by_side(rows: list[tuple[str, dict[str, LoadResult]]]) -> str:
    """Each scenario's figures for the baseline and the current proxy, and their difference."""
    lines = [
        "| scenario | figure | baseline | current | difference |",
        "|---|---|---|---|---|",
    ]
    for name, results in rows:
        if "baseline" not in results or "proxy" not in results:
            continue
        direct = results.get("direct")
        before, after = _figures(results["baseline"], direct), _figures(results["proxy"], direct)
        for figure in before:
            old, new = before[figure], after[figure]
            change = "-"
            if old is not None and new is not None:
                change = _number(new - old, figure)
                if not change.startswith("-"):
                    change = "+" + change
                if old and figure not in ("errors", "added p50 ms"):
                    change += f" ({(new - old) / old:+.0%})"
            lines.append(
                f"| {name} | {figure} | {_number(old, figure)} | {_number(new, figure)} | {change} |"
            )
    return "\n".join(lines)

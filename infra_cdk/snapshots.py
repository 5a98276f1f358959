"""Synthesize every example deployment offline, and keep reviewable snapshots of the templates.

    python -m infra_cdk.snapshots synth    # templates of every environment into cdk.out/
    python -m infra_cdk.snapshots diff     # unified diff against infra_cdk/snapshots/ (exit 1 if stale)
    python -m infra_cdk.snapshots update   # rewrite infra_cdk/snapshots/ from a new synth

A snapshot is a stack's template with asset hashes masked, so changing the service's code alone
(which changes the Docker image's hash) does not make the snapshots stale; changing the stacks
does, and `make diff` shows a reviewer exactly how.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT_DIR = Path(__file__).resolve().parent / "snapshots"
DEFAULT_OUTDIR = REPOSITORY_ROOT / "cdk.out"
# Asset hashes are 64 hex digits (SHA-256), in image tags, S3 keys and asset manifests.
_ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")
ASSET_HASH_MASK = "<asset-hash>"


def example_deployments() -> list[Any]:
    """What `make synth` checks: main's production pipeline (test + production environments)
    and a development pipeline of an example branch, with cdk.json's example configuration."""
    from infra_cdk.environments import Deployment, config_from_context

    config = config_from_context(cdk_json_context().get)
    return [
        Deployment(environment_type="production", branch="main", config=config, file_config=config),
        Deployment(
            environment_type="development", branch="example-branch", config=config, file_config=config
        ),
    ]


def cdk_json_context() -> dict[str, Any]:
    """The context of cdk.json (feature flags and the example configuration): an App built in
    Python without it would differ from `cdk synth`."""
    from infra_cdk.environments import cdk_json_context as read

    return read()


def synthesize(outdir: Path) -> Path:
    """Synthesize every example deployment into `outdir` with the cdk-nag checks; return `outdir`.

    Raises when a check fails (the report is in `outdir`/validation-report.json).
    """
    import aws_cdk as cdk

    from infra_cdk.app import add_checks, build

    app = cdk.App(outdir=str(outdir), context=cdk_json_context(), analytics_reporting=False)
    for deployment in example_deployments():
        build(app, deployment)
    add_checks(app)
    app.synth()
    return outdir


def templates(outdir: Path) -> Iterator[tuple[str, Path]]:
    """(name, template path) of every stack in the cloud assembly, nested stage assemblies too.

    The name is the stack's path in the app, e.g. `aiproxy-cicd/Production/aiproxy`.
    """
    manifest = json.loads((outdir / "manifest.json").read_text())
    for artifact in manifest.get("artifacts", {}).values():
        properties = artifact.get("properties", {})
        if artifact.get("type") == "aws:cloudformation:stack":
            yield artifact.get("displayName", properties["templateFile"]), outdir / properties["templateFile"]
        elif artifact.get("type") == "cdk:cloud-assembly":
            yield from templates(outdir / properties["directoryName"])


def mask(template: dict[str, Any]) -> dict[str, Any]:
    """The template with asset hashes replaced by a placeholder."""
    masked: dict[str, Any] = json.loads(_ASSET_HASH.sub(ASSET_HASH_MASK, json.dumps(template)))
    return masked


def snapshot_file_name(stack_name: str) -> str:
    return stack_name.replace("/", "--") + ".json"


def render(template: dict[str, Any]) -> str:
    return json.dumps(mask(template), indent=2, sort_keys=True) + "\n"


def rendered_snapshots(outdir: Path) -> dict[str, str]:
    """Snapshot file name -> masked, stably formatted template, for every stack in `outdir`."""
    return {
        snapshot_file_name(name): render(json.loads(path.read_text())) for name, path in templates(outdir)
    }


def committed_snapshots(directory: Path = SNAPSHOT_DIR) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(directory.glob("*.json"))}


def differences(current: dict[str, str], committed: dict[str, str]) -> list[str]:
    """Unified diff lines from the committed snapshots to the current synth (empty: up to date)."""
    lines: list[str] = []
    for name in sorted(set(current) | set(committed)):
        before, after = committed.get(name, ""), current.get(name, "")
        if before != after:
            lines += difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile=f"snapshots/{name}" if name in committed else "/dev/null",
                tofile=f"synth/{name}" if name in current else "/dev/null",
                n=4,
            )
    return lines


def write_snapshots(current: dict[str, str], directory: Path = SNAPSHOT_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in set(committed_snapshots(directory)) - set(current):
        (directory / stale).unlink()
    for name, text in current.items():
        (directory / name).write_text(text)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("synth", "diff", "update"):
        print("usage: python -m infra_cdk.snapshots synth|diff|update", file=sys.stderr)
        return 2
    command = argv[0]
    outdir = synthesize(DEFAULT_OUTDIR)
    current = rendered_snapshots(outdir)
    if command == "synth":
        for name, path in templates(outdir):
            print(f"{name}: {path.relative_to(REPOSITORY_ROOT)}")
        return 0
    if command == "update":
        write_snapshots(current)
        print(f"wrote {len(current)} snapshots to {SNAPSHOT_DIR.relative_to(REPOSITORY_ROOT)}/")
        return 0
    lines = differences(current, committed_snapshots())
    if not lines:
        print("The synthesized templates match the snapshots.")
        return 0
    sys.stdout.writelines(lines)
    print("\nThe stacks differ from infra_cdk/snapshots/; run `make snapshot` to accept the change.")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

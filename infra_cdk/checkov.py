"""checkov (a peer policy suite) over the synthesized templates, against a list of accepted failures.

    python -m infra_cdk.checkov    # synthesize like `make synth`, run checkov, compare with the list

checkov runs from a virtual environment of its own (.venv-checkov, `make test` builds it from
requirements-checkov.txt): installed into .venv it would downgrade packages the tests use.
Every failure that remains is listed in checkov_accepted.json with its reason; tests/infra/
test_checkov.py fails on a failure missing from the list and on a listed one that no longer
occurs, so the list stays exact.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
CHECKOV = REPOSITORY_ROOT / ".venv-checkov" / "bin" / "checkov"
ACCEPTED_FILE = Path(__file__).resolve().parent / "checkov_accepted.json"


@dataclass(frozen=True, order=True)
class Failure:
    check: str  # e.g. CKV_AWS_18
    stack: str  # the stack's path in the app, e.g. aiproxy-cicd/Production/aiproxy
    resource: str  # type and logical id, e.g. AWS::S3::Bucket.IngressAccessLogs80F9B44E


@dataclass(frozen=True)
class Scan:
    passed: int
    failures: frozenset[Failure]


def scan(templates: Mapping[str, Path]) -> Scan:
    """Run checkov's CloudFormation checks over `templates` (stack -> template file), offline."""
    if not CHECKOV.exists():
        raise FileNotFoundError(f"{CHECKOV} is missing: `make test` builds it from requirements-checkov.txt")
    stacks = {str(path.resolve()): stack for stack, path in templates.items()}
    command = [str(CHECKOV), "--framework", "cloudformation", "--quiet", "--compact", "--skip-download"]
    command += ["--output", "json", *(arg for path in stacks for arg in ("--file", path))]
    # Exit status 1 means "some check failed", which the caller judges; anything else is an error.
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPOSITORY_ROOT)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"checkov failed ({result.returncode}):\n{result.stderr[-4000:]}")
    reports = json.loads(result.stdout)
    passed, failures = 0, set()
    for report in reports if isinstance(reports, list) else [reports]:
        passed += report["summary"]["passed"]
        for found in report["results"]["failed_checks"]:
            stack = stacks[str((REPOSITORY_ROOT / found["file_abs_path"]).resolve())]
            failures.add(Failure(check=found["check_id"], stack=stack, resource=found["resource"]))
    return Scan(passed=passed, failures=frozenset(failures))


def accepted(path: Path = ACCEPTED_FILE) -> dict[Failure, str]:
    """Every accepted failure -> its reason, from the list (one entry per check and resource)."""
    entries = json.loads(path.read_text())
    return {
        Failure(check=entry["check"], stack=stack, resource=entry["resource"]): entry["reason"]
        for entry in entries
        for stack in entry["stacks"]
    }


def main() -> int:
    from infra_cdk import snapshots

    outdir = snapshots.synthesize(snapshots.DEFAULT_OUTDIR)
    result = scan(dict(snapshots.templates(outdir)))
    allowed = accepted()
    print(f"checkov: {result.passed} passed, {len(result.failures)} failed ({len(allowed)} accepted)")
    new, stale = sorted(result.failures - allowed.keys()), sorted(allowed.keys() - result.failures)
    for failure in new:
        print(f"NEW   {failure.check} {failure.stack} {failure.resource}")
    for failure in stale:
        print(f"STALE {failure.check} {failure.stack} {failure.resource} (no longer fails: remove it)")
    return 1 if new or stale else 0


if __name__ == "__main__":
    sys.exit(main())

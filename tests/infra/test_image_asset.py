"""The image asset's hash follows the service's sources only: bytecode a test run or a local server
leaves beside them changes neither the image nor its hash (else every pipeline run, which runs the
tests before it synthesizes, would build and deploy a new image)."""

import shutil
from pathlib import Path

from aws_cdk import FileSystem, IgnoreMode

from infra_cdk.compute import IMAGE_FILES, REPOSITORY_ROOT, image_asset_excludes


def fingerprint(folder: Path) -> str:
    return FileSystem.fingerprint(str(folder), exclude=image_asset_excludes(), ignore_mode=IgnoreMode.DOCKER)


def test_bytecode_changes_no_hash_and_a_source_change_does(tmp_path):
    for name in IMAGE_FILES:
        source = REPOSITORY_ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, tmp_path / name)
    clean = fingerprint(tmp_path)

    cache = tmp_path / "service" / "core" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "errors.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (tmp_path / "service" / "stray.pyc").write_bytes(b"\x00bytecode")
    assert fingerprint(tmp_path) == clean

    (tmp_path / "service" / "core" / "errors.py").write_text("# changed\n", encoding="utf-8")
    assert fingerprint(tmp_path) != clean

"""`python -m service.keys`: the tool operators mint and hash client keys with, run as they run it."""

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.governance.key_store import KEY_PREFIX, hash_key, parse_key_store
from service.governance.limits import Limits
from service.keys import main

ROOT = Path(__file__).resolve().parents[2]


def keys_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """Run the tool as operators do, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "service.keys", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def run(capsys, monkeypatch):
    """Run the tool in this process (quicker); same result shape as `keys_cli`."""

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = main(list(args))
        except SystemExit as stopped:  # argparse refusing the arguments
            code = stopped.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def minted(result: subprocess.CompletedProcess) -> tuple[str, dict]:
    """The key and the key store entry that `new` printed."""
    lines = result.stdout.splitlines()
    [key] = [line for line in lines if line.startswith(KEY_PREFIX)]
    [entry] = [json.loads(line) for line in lines if line.startswith("{")]
    return key, entry


def test_new_prints_a_random_256_bit_key_once_and_the_entry_holding_its_hash():
    result = keys_cli("new", "web")
    assert result.returncode == 0, result.stderr
    key, entry = minted(result)
    assert result.stdout.count(key) == 1
    random_part = key[len(KEY_PREFIX) :]
    assert len(base64.urlsafe_b64decode(random_part + "=" * (-len(random_part) % 4))) >= 32
    assert entry == {"web": {"keys": [hash_key(key)]}}
    # The entry, pasted into a store, lets exactly that key in.
    store = parse_key_store(json.dumps(entry), Limits(600, 50))
    assert store.authenticate(key).name == "web"


def test_every_new_key_is_different(run):
    first, _ = minted(run("new", "web"))
    second, _ = minted(run("new", "web"))
    assert first != second


def test_new_can_set_the_clients_limits(run):
    _, entry = minted(run("new", "batch-jobs", "--rpm", "30", "--max-concurrent", "4"))
    assert entry["batch-jobs"]["rpm"] == 30
    assert entry["batch-jobs"]["max_concurrent"] == 4


def test_new_refuses_a_client_name_logs_could_not_show_plainly(run):
    for name in ("has space", "anonymous", ".dot-first", "semi;colon", "x" * 65):
        result = run("new", name)
        assert result.returncode == 2
        assert "use 1 to 64 letters" in result.stderr
        assert result.stdout == ""


def test_hash_reads_a_key_on_stdin_and_matches_what_new_stored():
    key, entry = minted(keys_cli("new", "web"))
    result = keys_cli("hash", stdin=key + "\n")
    assert result.returncode == 0
    assert result.stdout.strip() == entry["web"]["keys"][0]
    assert key not in result.stdout


def test_hash_without_a_key_fails(run):
    result = run("hash", stdin="\n")
    assert result.returncode == 2
    assert "no key on stdin" in result.stderr


def test_check_summarises_a_valid_store(run):
    store = {"web": {"keys": [hash_key("aip_a"), hash_key("aip_b")]}, "batch": {"keys": [], "rpm": 5}}
    result = run("check", stdin=json.dumps(store))
    assert result.returncode == 0
    assert "2 client(s)" in result.stdout
    assert "web: 2 key(s), rpm 600, max_concurrent 50" in result.stdout
    assert "batch: 0 key(s), rpm 5, max_concurrent 50" in result.stdout
    assert hash_key("aip_a") not in result.stdout


def test_check_names_the_problem_without_printing_the_store(run):
    result = run("check", stdin=json.dumps({"web": {"keys": ["aip_a-raw-key-by-mistake"]}}))
    assert result.returncode == 1
    assert "keys[0] is not a sha256 hex digest" in result.stderr
    assert "aip_a-raw-key-by-mistake" not in result.stderr + result.stdout

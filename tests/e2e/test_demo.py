"""`make demo` as a newcomer runs it, on free ports: the stand-in provider and the real proxy,
tried with the official openai client, the sample assessment, the lab command and the README's
quick start, all with no provider key; Ctrl-C stops both processes."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from openai import OpenAI

from testbed.server import ROOT, free_port, stop_process
from tests.support.http import fetch
from tests.support.waiting import wait_until

GRADES = {"Extensive Evidence", "Convincing Evidence", "Limited Evidence", "No Evidence"}
SAMPLE_RUBRIC = ROOT / "service" / "assessment" / "samples" / "rubric.csv"
READY = "The demo is running"


@dataclass
class Demo:
    process: subprocess.Popen
    proxy_url: str
    provider_port: int
    output: Path

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")


def terminal_env() -> dict[str, str]:
    """The environment of a terminal: none of the `make test` run's own make variables."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def two_free_ports() -> tuple[int, int]:
    port = free_port()
    while (other := free_port()) == port:
        pass
    return port, other


@contextmanager
def started_demo(folder: Path) -> Iterator[Demo]:
    """`make demo` on free ports, as typed in a terminal; ready once it printed what to try."""
    port, provider_port = two_free_ports()
    output = folder / "demo.out"
    with open(output, "w") as out:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "demo", f"PORT={port}", f"DEMO_PROVIDER_PORT={provider_port}"],
            cwd=ROOT,
            env=terminal_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job has
        )
    demo = Demo(process, f"http://127.0.0.1:{port}", provider_port, output)
    try:
        wait_until(lambda: READY in demo.text() or process.poll() is not None, timeout=120)
        assert process.poll() is None, demo.text()
        yield demo
    finally:
        stop_process(process, timeout=60)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    with started_demo(tmp_path_factory.mktemp("demo")) as running:
        yield running


def rubric_concepts(path: Path) -> list[str]:
    rows = list(csv.DictReader(path.open(newline="")))
    return [row["Key Concept"] for row in rows]


def run_bash(script: str, demo: Demo, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run shell commands as a reader pastes them, with the demo's addresses and the lab's report
    kept out of the work tree."""
    env = {
        **terminal_env(),
        "AIPROXY": demo.proxy_url,
        "DEMO_PROVIDER_PORT": str(demo.provider_port),
        "ARGS": f"--output {tmp_path / 'report'} --quiet",
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def assert_quick_start_output(result: subprocess.CompletedProcess, tmp_path: Path) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"object": "chat.completion"' in out  # the plain chat
    assert "data: [DONE]" in out  # the stream
    assessment = json.JSONDecoder().raw_decode(out, out.index('{"metadata"'))[0]
    assert [row["Key Concept"] for row in assessment["data"]] == rubric_concepts(SAMPLE_RUBRIC)
    assert re.search(r"^Students: 12 graded, 0 failed$", out, re.MULTILINE)  # the lab
    assert (tmp_path / "report" / "summary.json").is_file()


# --- what the demo answers -------------------------------------------------------------------------


def test_chat_and_stream_through_the_proxy_with_the_openai_client(demo):
    client = OpenAI(base_url=demo.proxy_url + "/v1", api_key="no-key-needed", max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
    )
    assert reply.choices[0].message.content == "Hello from the fake upstream."

    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Count to 3"}], stream=True
    )
    deltas = [chunk.choices[0].delta.content for chunk in stream if chunk.choices]
    assert len([d for d in deltas if d]) > 1  # streamed in pieces, not one answer
    assert "".join(d or "" for d in deltas) == "Hello from the fake upstream."


def test_sample_assessment_is_graded_on_the_sample_rubric(demo):
    response = fetch(demo.proxy_url + "/test/assessment?num-responses=3")
    assert response.status == 200, response.body
    answer = json.loads(response.body)
    assert answer["metadata"]["agent"] == "openai"
    rows = answer["data"]
    assert [row["Key Concept"] for row in rows] == rubric_concepts(SAMPLE_RUBRIC)
    assert all(row["Grade"] in GRADES and len(row["Votes"]) == 3 for row in rows)
    assert all(row["Observations"] and row["Reason"] for row in rows)


def test_grades_follow_what_the_program_contains(demo):
    """Not a constant answer: two `if`s and one function give Convincing and Limited Evidence."""
    code = "function check(x) {\n  if (x > 1) { return 1; }\n  if (x < 0) { return -1; }\n}\n"
    rubric = "Key Concept,Description\nConditionals,if statements\nFunctions,functions\nUser Input,keys\n"
    body = {"code": code, "prompt": "Grade this program.", "rubric": rubric}
    response = fetch(
        demo.proxy_url + "/assessment", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    assert response.status == 200, response.body
    rows = json.loads(response.body)["data"]
    assert {row["Key Concept"]: row["Grade"] for row in rows} == {
        "Conditionals": "Convincing Evidence",
        "Functions": "Limited Evidence",
        "User Input": "No Evidence",
    }
    assert rows[0]["Observations"] == "Counted 2 if statements on lines 2, 3."


@pytest.mark.parametrize(
    "prompt, response_format",
    [
        ("Answer with a JSON array of objects, one per key concept.", None),
        ("Grade this program.", {"type": "json_object"}),
    ],
)
def test_the_stand_in_answers_json_when_asked(demo, prompt, response_format):
    provider = OpenAI(base_url=f"http://127.0.0.1:{demo.provider_port}/v1", api_key="any", max_retries=0)
    extra = {"response_format": response_format} if response_format else {}
    reply = provider.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": f"{prompt}\n\nRubric:\nKey Concept,Notes\nLoops,for or while\n"},
            {"role": "user", "content": "for (let i = 0; i < 3; i++) {}\nwhile (true) {}\n"},
        ],
        **extra,
    )
    assert json.loads(reply.choices[0].message.content) == [
        {
            "Key Concept": "Loops",
            "Observations": "Counted 2 loops on lines 1, 2.",
            "Grade": "Convincing Evidence",
            "Reason": "The demo stand-in counts, it does not judge: "
            "0 is No, 1 Limited, 2 or 3 Convincing, 4 or more Extensive Evidence.",
        }
    ]


def test_the_lab_command_reports_on_the_sample_dataset(demo, tmp_path):
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "evaluate",
            "DEMO=1",
            f"DEMO_PROVIDER_PORT={demo.provider_port}",
            f"ARGS=--output {tmp_path} --quiet",
        ],
        cwd=ROOT,
        env=terminal_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["students"]["graded"] == 12 and summary["students"]["failed"] == 0
    # Counting features agrees with the teacher's labels on most grades, not all: a report worth reading.
    assert 0.5 < summary["overall"]["accuracy"] < 1
    assert summary["calls"] == {"upstream": 12, "cached": 0}  # demo answers are never cached
    assert (tmp_path / "report.html").stat().st_size > 0


# --- copy and paste ------------------------------------------------------------------------------


def quick_start_blocks() -> list[str]:
    """The README's quick-start shell blocks that talk to a running server."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", readme, re.DOTALL | re.MULTILINE)
    assert section, "README.md has no '## Quick start' section"
    blocks = re.findall(r"^```sh\n(.*?)^```", section[1], re.DOTALL | re.MULTILINE)
    return [block for block in blocks if "$AIPROXY" in block]


def test_readme_quick_start_commands_work_against_the_demo(demo, tmp_path):
    [block] = quick_start_blocks()
    assert "make evaluate DEMO=1" in block
    assert_quick_start_output(run_bash(block, demo, tmp_path), tmp_path)


def test_api_md_examples_work_against_the_demo(demo, tmp_path):
    """Every shell example of API.md, pasted in order after its set-up lines: no syntax error, no
    mistyped route or field. Only the Bedrock example fails, as it says (no AWS set up here)."""
    text = (ROOT / "API.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    setup = blocks[0]
    assert len(blocks) > 10 and "export AIPROXY=" in setup
    for block in blocks[1:]:
        result = run_bash(f"{setup}\n{block}", demo, tmp_path)
        assert result.returncode == 0, block + result.stderr
        assert "not_found_error" not in result.stdout, block + result.stdout
        if "bedrock/" in block:
            assert '"service_unavailable"' in result.stdout, result.stdout
        else:
            assert "invalid_request_error" not in result.stdout, block + result.stdout


def test_the_commands_the_demo_prints_work(demo, tmp_path):
    printed = demo.text().split("In another terminal, try:\n\n", 1)[1].split("\n\n", 1)[0]
    commands = "\n".join(line.removeprefix("    ") for line in printed.splitlines())
    assert f"export AIPROXY={demo.proxy_url}" in commands
    assert f"make evaluate DEMO=1 DEMO_PROVIDER_PORT={demo.provider_port}" in commands
    assert_quick_start_output(run_bash(commands, demo, tmp_path), tmp_path)


# --- stopping -----------------------------------------------------------------------------------


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_ctrl_c_stops_the_proxy_and_the_stand_in(tmp_path):
    with started_demo(tmp_path) as demo:
        proxy_port = int(demo.proxy_url.rsplit(":", 1)[1])
        assert not refuses_connections(proxy_port) and not refuses_connections(demo.provider_port)
        os.killpg(demo.process.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground job
        demo.process.wait(timeout=60)
        wait_until(lambda: "Stopped the proxy and the stand-in provider." in demo.text(), timeout=60)
        wait_until(lambda: refuses_connections(proxy_port) and refuses_connections(demo.provider_port))

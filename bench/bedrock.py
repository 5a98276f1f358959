"""The Bedrock scenarios: what translating OpenAI chats to Converse (and back) adds.

"direct" posts a Converse request straight to the fake Bedrock runtime (what an application
using Bedrock itself would send); "proxy" posts the equivalent OpenAI chat with a `bedrock/`
model to the proxy, which translates it, signs and sends it with boto3, and translates the answer
(or the ConverseStream events) back. The fake answers after the same fixed delay for both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from bench.load import LoadResult, measure
from bench.processes import fake_process

MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
PROMPT = "Write one sentence about the sea."


def proxy_settings(port: int) -> dict[str, str]:
    """The proxy's settings that send `bedrock/` models to the fake on `port`."""
    return {
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": f"http://127.0.0.1:{port}",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-not-a-secret",
    }


def fake_bedrock(port: int, *, delay: float = 0.0, stream_pause: float = 0.0) -> AbstractContextManager[str]:
    """Run testbed/bedrock_runtime.py in its own process on `port`; yield its URL."""
    return fake_process("testbed.bedrock_runtime", port, delay=delay, stream_pause=stream_pause)


def targets(fake_url: str, proxy_url: str, stream: bool) -> dict[str, tuple[str, bytes]]:
    """path name -> (URL, body) for the same chat sent straight to Bedrock and through the proxy."""
    operation = "converse-stream" if stream else "converse"
    converse = {"messages": [{"role": "user", "content": [{"text": PROMPT}]}]}
    chat: dict = {"model": "bedrock/" + MODEL_ID, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        chat.update(stream=True, stream_options={"include_usage": True})
    # The model id travels URL-encoded, as botocore sends it.
    encoded = MODEL_ID.replace(":", "%3A")
    return {
        "direct": (f"{fake_url}/model/{encoded}/{operation}", json.dumps(converse).encode()),
        "proxy": (proxy_url + "/v1/chat/completions", json.dumps(chat).encode()),
    }


def run_scenario(
    scenario: Any, proxy_url: str, proxy_cpu: Callable[[], float], port: int
) -> dict[str, LoadResult]:
    """Run `scenario`'s load straight at a fake Bedrock on `port` and through the proxy (whose
    CPU seconds so far `proxy_cpu` reads)."""
    with fake_bedrock(port, delay=scenario.delay, stream_pause=scenario.stream_pause) as fake_url:
        paths = targets(fake_url, proxy_url, scenario.stream)
        # Only the proxy's answer is Server-Sent Events ending with [DONE].
        return measure(
            scenario,
            {path: (url, body, scenario.stream and path == "proxy") for path, (url, body) in paths.items()},
            cpu_clocks={"proxy": proxy_cpu},
        )

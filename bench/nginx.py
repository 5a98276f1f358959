"""An upstream fast enough that the proxy is the bottleneck: nginx answering fixed OpenAI answers.

The Python fake (testbed/openai_upstream.py) answers a few thousand requests a second on this
kind of machine, about as fast as the proxy: it hides what the proxy costs. nginx, a C server,
answers tens of thousands. `nginx_upstream()` starts Debian's nginx (when installed) as a
foreground process with a config generated into a temporary folder (its pid file, logs and temp
folders there too, listening on a free port of 127.0.0.1), and stops it afterwards.

POST /v1/chat/completions answers a fixed chat completion, or a fixed 6-event chat stream
(text/event-stream, OpenAI's chunk shape, a final usage chunk, `data: [DONE]`) when the body
says `"stream": true`. nginx cannot look at a body where it picks a location or an answer (that
happens before the body is read), so the front location hands the request on to a second
location of the same server over a kept-alive connection, with a header saying which answer to
give: the header's value comes from `$request_body`, which nginx fills once the body has been
read into memory, as it is for `proxy_pass` (client_body_in_single_buffer keeps it one buffer).
The choice therefore follows the body itself, whatever proxy version sent it, with no setting of
the proxy to change; the hop costs nginx some 20 microseconds, and "direct" runs pay it too.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.server import free_port, stop_process

NGINX = "/usr/sbin/nginx"
MODEL = "gpt-4o-mini"
_BASE = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1764000000, "model": MODEL}
_USAGE = {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}


def _chunk(delta: dict, finish: str | None) -> dict:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {**_BASE, "choices": [choice], "usage": None}


CHAT = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1764000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The sea is calm tonight.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _USAGE,
    }
)
# Six events: the role, two pieces of content, the finish, the usage (no choices), [DONE].
STREAM_EVENTS = [
    json.dumps(_chunk({"role": "assistant", "content": ""}, None)),
    json.dumps(_chunk({"content": "The sea"}, None)),
    json.dumps(_chunk({"content": " is calm tonight."}, None)),
    json.dumps(_chunk({}, "stop")),
    json.dumps({**_BASE, "choices": [], "usage": _USAGE}),
    "[DONE]",
]
STREAM = "".join(f"data: {event}\n\n" for event in STREAM_EVENTS)


def available() -> bool:
    return Path(NGINX).is_file()


def _quoted(text: str) -> str:
    """`text` as an nginx single-quoted string (its `\\n` escapes become newlines again)."""
    if "$" in text or "'" in text:
        raise ValueError("an nginx string would read this as a variable or its end")
    return "'" + text.replace("\\", "\\\\").replace("\n", "\\n") + "'"


def config(folder: Path, port: int) -> str:
    """The whole nginx.conf: everything it writes stays in `folder`."""
    return f"""
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
    client_body_in_single_buffer on;
    map $request_body $answer {{
        '~"stream"\\s*:\\s*true' stream;
        default whole;
    }}
    upstream answers {{
        server 127.0.0.1:{port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location = /v1/chat/completions {{
            proxy_pass http://answers/answer;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Answer $answer;
        }}
        location = /answer {{
            error_page 418 = @stream;
            if ($http_x_answer = stream) {{ return 418; }}
            default_type application/json;
            return 200 {_quoted(CHAT)};
        }}
        location @stream {{
            default_type text/event-stream;
            return 200 {_quoted(STREAM)};
        }}
        location / {{
            default_type application/json;
            return 404 '{{"error": {{"message": "not served by the bench upstream", "type": "not_found"}}}}';
        }}
    }}
}}
"""


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nginx did not listen on {port} within {timeout} s: {log.read_text()}")


@contextmanager
def nginx_upstream(port: int | None = None) -> Iterator[str]:
    """Run nginx on `port` (else a free one) of 127.0.0.1; yield its base URL (ending in /v1)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    try:
        port = port or free_port()
        conf = folder / "nginx.conf"
        conf.write_text(config(folder, port))
        log = folder / "stderr.log"
        with open(log, "w") as stderr:
            # -e: the start-up messages go to the folder too, never to the system's log file.
            process = subprocess.Popen(
                [NGINX, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            _wait_for_port(port, process, log)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            stop_process(process, timeout=10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

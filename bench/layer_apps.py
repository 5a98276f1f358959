"""The stand-ins `python -m bench.layers` measures: the proxy's stack, one layer at a time.

Each relays `POST .../chat/completions` to the fake upstream and answers with the upstream's
body:

- `python -m bench.layer_apps --port N --upstream URL`: a plain byte relay on a gevent server, no
  HTTP at all (the cost of any proxy process here: two more socket hops);
- `plain_app`: gunicorn's gevent worker and a WSGI app that relays over one plain socket;
- `pool_app`: the same app through the proxy's upstream pool (`service.gateway.providers.http_pool`);
- `flask_app`: a one-route Flask app through that pool (for comparison: the proxy serves its relay
  routes outside Flask).

The gunicorn apps find the upstream in the environment variable UPSTREAM_URL, answer `GET /` with
200 as the proxy's health check does (the test servers wait for it). None of them authenticates,
validates, logs or retries: they are floors, not proxies.
"""

from __future__ import annotations

import argparse
import os
import socket

from service.gateway.providers.http_pool import OriginPool


def _origin(url: str) -> tuple[str, str, int, str]:
    """host:port, host, port and the chat completions target of the upstream at `url`."""
    host_port, _, base = url.split("//", 1)[1].partition("/")
    host, port = host_port.rsplit(":", 1)
    return host_port, host, int(port), "/" + (base + "/" if base else "") + "chat/completions"


UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:9/v1")
_HOST_PORT, _HOST, _PORT, _TARGET = _origin(UPSTREAM_URL)
_JSON = [("Content-Type", "application/json")]
_HEALTHY = [b"ok"]


def _health(environ, start_response) -> list[bytes] | None:
    """The answer to `GET /`, or None for any other request."""
    if environ["REQUEST_METHOD"] != "GET":
        return None
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return _HEALTHY


_plain: socket.socket | None = None


def plain_app(environ, start_response):
    """One kept-alive socket, so one client at a time; the fake's answers arrive in one piece."""
    global _plain
    if health := _health(environ, start_response):
        return health
    body = environ["wsgi.input"].read()
    if _plain is None:  # gunicorn's worker has monkey-patched socket: this one is gevent's
        _plain = socket.create_connection((_HOST, _PORT))
        _plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = f"POST {_TARGET} HTTP/1.1\r\nHost: {_HOST_PORT}\r\nContent-Type: application/json\r\n"
    _plain.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    answer = _plain.recv(65536).split(b"\r\n\r\n", 1)[1]
    start_response("200 OK", [*_JSON, ("Content-Length", str(len(answer)))])
    return [answer]


_pool = OriginPool(UPSTREAM_URL, connect_timeout=10, read_timeout=60, size=100)


def _pool_relay(body: bytes) -> bytes:
    answer = _pool.request("POST", _TARGET, {"Content-Type": "application/json"}, body)
    return answer.read()


def pool_app(environ, start_response):
    if health := _health(environ, start_response):
        return health
    answer = _pool_relay(environ["wsgi.input"].read())
    start_response("200 OK", [*_JSON, ("Content-Length", str(len(answer)))])
    return [answer]


def _flask_app():
    from flask import Flask, Response, request

    app = Flask(__name__)
    app.get("/")(lambda: "ok")

    @app.post("/v1/chat/completions")
    def chat_completions() -> Response:
        return Response(_pool_relay(request.get_data()), content_type="application/json")

    return app


flask_app = _flask_app()


def _serve_relay(port: int, upstream_url: str) -> None:
    from gevent import socket as gevent_socket
    from gevent.server import StreamServer

    _, host, upstream_port, upstream_target = _origin(upstream_url)

    def relay(client: socket.socket, _address) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream = gevent_socket.create_connection((host, upstream_port))
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        prefix, target = b"POST /v1/chat/completions ", b"POST " + upstream_target.encode() + b" "
        while data := client.recv(65536):  # one request per read: the load is one small request
            upstream.sendall(data.replace(prefix, target, 1))
            client.sendall(upstream.recv(65536))

    server = StreamServer(("127.0.0.1", port), relay)
    server.start()
    print(f"ready http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.layer_apps", description="the byte relay")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the fake upstream's base URL")
    args = parser.parse_args()
    _serve_relay(args.port, args.upstream)

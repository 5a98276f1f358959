"""Gunicorn's answers of known length leave in one send (service/response_write.py).

The real gunicorn parser and Response over a socket pair; the socket records each send.
"""

from __future__ import annotations

import socket

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from service import response_write


class RecordingSocket:
    """The server's end of a socket pair, remembering every send."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sends: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))
        self._sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


@pytest.fixture
def exchange():
    """Parse one request with gunicorn, answer it with `answer(status, headers, chunks)`;
    return (the sends, every byte the client received)."""
    assert response_write.install()
    server, client = socket.socketpair()
    recording = RecordingSocket(server)

    def answer(request: bytes, status: str, headers: list[tuple[str, str]], chunks: list[bytes]):
        client.sendall(request)
        cfg = Config()
        req = next(RequestParser(cfg, recording, ("127.0.0.1", 1234)))
        response, _ = wsgi.create(req, recording, ("127.0.0.1", 1234), ("127.0.0.1", 80), cfg)
        response.start_response(status, headers)
        for chunk in chunks:
            response.write(chunk)
        response.close()
        server.shutdown(socket.SHUT_WR)
        received = b""
        while data := client.recv(65536):
            received += data
        return recording.sends, received

    yield answer
    server.close()
    client.close()


GET = b"GET /v1/models HTTP/1.1\r\nHost: proxy\r\n\r\n"


def test_a_known_length_answer_is_one_send_with_head_and_body(exchange):
    body = b'{"object": "list", "data": []}'
    sends, received = exchange(
        GET, "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], [body]
    )
    assert len(sends) == 1
    assert sends[0] == received
    head, _, sent_body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Length: 30" in head and b"\r\nContent-Type: application/json" in head
    assert sent_body == body


def test_a_streamed_answer_keeps_gunicorns_chunked_writes(exchange):
    sends, received = exchange(
        GET, "200 OK", [("Content-Type", "text/event-stream")], [b"data: 1\n\n", b"data: 2\n\n"]
    )
    assert len(sends) > 2  # the head, then each chunk as it comes
    assert received.endswith(b"9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n")


def test_a_body_written_in_pieces_is_sent_whole(exchange):
    sends, received = exchange(GET, "200 OK", [("Content-Length", "6")], [b"abc", b"def"])
    assert received.endswith(b"\r\n\r\nabcdef")
    assert len(sends) == 3


def test_head_answers_carry_no_body(exchange):
    head_request = b"HEAD /v1/models HTTP/1.1\r\nHost: proxy\r\n\r\n"
    _, received = exchange(head_request, "200 OK", [("Content-Length", "5")], [b"hello"])
    assert received.endswith(b"\r\n\r\n")
    assert b"hello" not in received

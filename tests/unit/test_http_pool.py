"""The pool's contract (service/gateway/providers/http_pool.py), against servers written by hand.

The relay relies on how an answer is read: what has arrived comes back at once, all of one
upstream read together (a stream relays every event of one read in one write), an answer cut
short is an error at once (never a hang, never a short body passed off as whole), a connection
goes back to the pool only once its answer was read to the end and is closed when the answer is
abandoned (which is how an upstream learns that nobody listens any more), and a failure to connect
is told apart from one after. Each test pins one of these.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from service.gateway.providers.http_pool import (
    Broken,
    ConnectFailed,
    ConnectTimeout,
    OriginPool,
    ReadTimeout,
    TransportError,
)
from tests.support.raw_http import RawConnection, RawServer

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


def pool(url: str, *, read_timeout: float = 10, connect_timeout: float = 5) -> OriginPool:
    return OriginPool(url, connect_timeout=connect_timeout, read_timeout=read_timeout, size=10)


def get(origin: OriginPool):
    return origin.request("GET", "/v1/stream", {"Accept": "text/event-stream"}, None)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# How each framing sends the head, a piece of the body, and the end of the body.
FRAMINGS = {
    "chunked": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n", chunk, b"0\r\n\r\n"),
    "content-length": (HEAD + b"Content-Length: 18\r\n\r\n", lambda data: data, b""),
    "until close": (HEAD + b"Connection: close\r\n\r\n", lambda data: data, None),
}


# --- what has arrived, at once ------------------------------------------------------------------------


@pytest.mark.parametrize("framing", FRAMINGS.values(), ids=FRAMINGS.keys())
def test_what_has_arrived_is_returned_at_once_before_the_rest_of_the_body(framing):
    head, piece, end = framing
    go_on = threading.Event()

    def answer(connection: RawConnection) -> None:
        connection.read_request()
        connection.send(head + piece(b"line one\n"))
        go_on.wait(5)  # the rest only once the client has the first piece
        connection.send(piece(b"line two\n"))
        if end is not None:
            connection.send(end)

    with RawServer(answer) as server:
        answer_ = get(pool(server.url))
        started = time.monotonic()
        assert answer_.read_available() == b"line one\n"
        assert time.monotonic() - started < 1 and not go_on.is_set()
        go_on.set()
        assert answer_.read_available() == b"line two\n"
        assert answer_.read_available() == b""
        assert answer_.read_available() == b""  # and stays at the end


def test_the_chunks_of_one_upstream_write_come_back_together():
    def answer(connection: RawConnection) -> None:
        connection.read_request()
        connection.send(FRAMINGS["chunked"][0])
        time.sleep(0.2)  # the head first, then three chunks in one write
        connection.send(chunk(b"one\n") + chunk(b"two\n") + chunk(b"three\n"), b"0\r\n\r\n", pause=0.2)

    with RawServer(answer) as server:
        answer_ = get(pool(server.url))
        assert answer_.read_available() == b"one\ntwo\nthree\n"
        assert answer_.read_available() == b""


def test_a_piece_written_in_two_writes_comes_back_as_each_arrives():
    def answer(connection: RawConnection) -> None:
        connection.read_request()
        connection.send(FRAMINGS["chunked"][0] + chunk(b'data: {"half": '))
        time.sleep(0.5)
        connection.send(chunk(b'"whole"}\n'), b"0\r\n\r\n")

    with RawServer(answer) as server:
        answer_ = get(pool(server.url))
        assert answer_.read_available() == b'data: {"half": '
        started = time.monotonic()
        assert answer_.read_available() == b'"whole"}\n'
        assert time.monotonic() - started >= 0.4
        assert answer_.read_available() == b""


@pytest.mark.parametrize("framing", FRAMINGS.values(), ids=FRAMINGS.keys())
def test_a_whole_body_is_read_in_every_framing(framing):
    head, piece, end = framing

    def answer(connection: RawConnection) -> None:
        connection.read_request()
        connection.send(head + piece(b"line one\n"), piece(b"line two\n"), end or b"", pause=0.05)

    with RawServer(answer) as server:
        answer_ = get(pool(server.url))
        assert (answer_.status, answer_.headers["content-type"]) == (200, "text/event-stream")
        assert answer_.read() == b"line one\nline two\n"
        assert answer_.read() == b""


def test_repeated_header_fields_are_joined_and_names_are_lower_case():
    def answer(connection: RawConnection) -> None:
        connection.read_request()
        connection.send(b"HTTP/1.1 201 Created\r\nX-Thing: a\r\nx-thing: b\r\nContent-Length: 2\r\n\r\nok")

    with RawServer(answer) as server:
        answer_ = get(pool(server.url))
        assert answer_.status == 201
        assert answer_.headers["x-thing"] == "a, b"
        assert answer_.read() == b"ok"


# --- an answer cut short --------------------------------------------------------------------------------

CUT_ANSWERS = {
    "shorter than its length": HEAD + b"Content-Length: 100\r\n\r\nline\npart",
    "chunked, cut inside a chunk": HEAD + b"Transfer-Encoding: chunked\r\n\r\na\r\nline\npar",
    "chunked, no last chunk": HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunk(b"line\npart"),
}


@pytest.mark.parametrize("cut", CUT_ANSWERS.values(), ids=CUT_ANSWERS.keys())
def test_an_answer_cut_before_its_end_is_an_error_at_once_never_an_end(cut):
    def answer(connection: RawConnection) -> None:
        connection.read_request()
        connection.send(cut)  # then the connection closes

    with RawServer(answer) as server:
        answer_ = get(pool(server.url, read_timeout=10))
        received = b""
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            while piece := answer_.read_available():
                received += piece
        assert time.monotonic() - started < 1
        assert (caught.type, caught.value.reason) == (Broken, "the answer ended early")
        assert received in (b"line\n", b"line\npar", b"line\npart")  # what came, never an end


@pytest.mark.parametrize("cut", CUT_ANSWERS.values(), ids=CUT_ANSWERS.keys())
def test_reading_a_cut_answer_whole_is_an_error_at_once(cut):
    def answer(connection: RawConnection) -> None:
        connection.read_request()
        connection.send(cut)

    with RawServer(answer) as server:
        answer_ = get(pool(server.url, read_timeout=10))
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            answer_.read()
        assert time.monotonic() - started < 1
        assert caught.type is Broken


def test_silence_in_the_middle_of_a_body_is_a_read_timeout():
    def answer(connection: RawConnection) -> None:
        connection.read_request()
        connection.send(FRAMINGS["chunked"][0] + chunk(b"line\n") + chunk(b"par"))
        connection.wait_for_eof(5)

    with RawServer(answer) as server:
        answer_ = get(pool(server.url, read_timeout=0.3))
        assert answer_.read_available() == b"line\npar"
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            answer_.read_available()
        assert 0.25 < time.monotonic() - started < 2
        assert caught.type is ReadTimeout


# --- connection reuse -------------------------------------------------------------------------------


def keep_alive(connection: RawConnection) -> None:
    """Answer every request on the connection with a two-line chunked body."""
    while connection.read_request():
        connection.send(FRAMINGS["chunked"][0] + chunk(b"one\n") + chunk(b"two\n") + b"0\r\n\r\n")


@pytest.mark.parametrize("read", ["whole", "as it arrives"])
def test_a_connection_is_reused_once_its_answer_was_read_to_the_end(read):
    with RawServer(keep_alive) as server:
        origin = pool(server.url)
        for _ in range(3):
            answer_ = get(origin)
            if read == "whole":
                assert answer_.read() == b"one\ntwo\n"
            else:
                received = b""
                while piece := answer_.read_available():
                    received += piece
                assert received == b"one\ntwo\n"
            answer_.close()
        assert [len(c.requests) for c in server.connections] == [3]


@pytest.mark.parametrize("idle_end", ["closed", "stray bytes"])
def test_an_idle_connection_the_upstream_ended_is_not_reused_and_the_request_gets_a_new_one(idle_end):
    def answer_once_then_end(connection: RawConnection) -> None:
        connection.read_request()
        connection.send(FRAMINGS["chunked"][0] + chunk(b"one\n") + b"0\r\n\r\n")
        time.sleep(0.05)  # after the answer, while the connection is idle in the pool
        if idle_end == "stray bytes":  # what nobody asked for: the next answer would be garbled
            connection.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
        else:
            connection.sock.shutdown(socket.SHUT_WR)  # an upstream's idle timeout
        connection.wait_for_eof(5)

    with RawServer(answer_once_then_end) as server:
        origin = pool(server.url)
        for _ in range(2):
            answer_ = get(origin)
            assert answer_.read() == b"one\n"
            answer_.close()
            time.sleep(0.2)  # the upstream's close or bytes arrive while the connection is idle
        assert len(server.connections) == 2
        assert all(len(c.requests) == 1 for c in server.connections)


CLOSING_ANSWERS = {
    "until close": HEAD + b"\r\none\ntwo\n",
    "Connection: close": HEAD + b"Connection: close\r\nContent-Length: 8\r\n\r\none\ntwo\n",
    "HTTP/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\none\ntwo\n",
}


@pytest.mark.parametrize("closing", CLOSING_ANSWERS.values(), ids=CLOSING_ANSWERS.keys())
def test_an_answer_that_ends_its_connection_is_read_whole_and_the_next_request_gets_a_new_one(closing):
    def answer(connection: RawConnection) -> None:
        connection.read_request()
        connection.send(closing)
        connection.wait_for_eof(5)  # a connection the client kept would stay open here

    with RawServer(answer) as server:
        origin = pool(server.url)
        for _ in range(2):
            answer_ = get(origin)
            if b"Content-Length" not in closing:
                server.connections[-1].sock.shutdown(socket.SHUT_WR)  # the body ends with the close
            assert answer_.read() == b"one\ntwo\n"
            answer_.close()
        assert len(server.connections) == 2


def test_an_answer_closed_before_its_end_closes_its_connection_and_the_next_request_gets_a_new_one():
    saw_eof = threading.Event()

    def answer(connection: RawConnection) -> None:
        if len(server.connections) > 1:
            return keep_alive(connection)
        connection.read_request()
        connection.send(FRAMINGS["chunked"][0] + chunk(b"first line\n"))  # and more to come
        if connection.wait_for_eof(5):
            saw_eof.set()

    with RawServer(answer) as server:
        origin = pool(server.url)
        answer_ = get(origin)
        assert answer_.read_available() == b"first line\n"
        answer_.close()
        # The upstream sees the connection closed: nobody will read the rest of its answer.
        assert saw_eof.wait(2)
        assert get(origin).read() == b"one\ntwo\n"
        assert len(server.connections) == 2


# --- failing to connect, told apart from failing later ----------------------------------------------


def test_a_refused_connection_is_a_connect_error():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]  # nobody listens once it is closed
    with pytest.raises(TransportError) as caught:
        get(pool(f"http://127.0.0.1:{port}"))
    assert caught.type is ConnectFailed


def test_a_connection_that_never_opens_is_a_connect_timeout():
    # A listener that never accepts, its queue full: the kernel drops further SYNs.
    with RawServer(lambda c: None, backlog=0, accept=False) as server:
        fillers = []
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", server.port))
            fillers.append(filler)
        time.sleep(0.1)
        try:
            started = time.monotonic()
            with pytest.raises(TransportError) as caught:
                get(pool(server.url, connect_timeout=0.5))
            assert caught.type is ConnectTimeout
            assert time.monotonic() - started < 3
        finally:
            for filler in fillers:
                filler.close()


def test_a_connection_closed_without_an_answer_is_broken_not_a_connect_error():
    def hang_up(connection: RawConnection) -> None:
        connection.read_request()  # then close without a byte

    with RawServer(hang_up) as server:
        with pytest.raises(TransportError) as caught:
            get(pool(server.url))
        assert caught.type is Broken
        assert caught.value.reason == "it closed the connection without an answer"


def test_no_answer_within_the_read_timeout_is_a_timeout_not_a_connect_timeout():
    def silent(connection: RawConnection) -> None:
        connection.read_request()
        connection.wait_for_eof(5)

    with RawServer(silent) as server:
        with pytest.raises(TransportError) as caught:
            get(pool(server.url, read_timeout=0.3, connect_timeout=5))
        assert caught.type is ReadTimeout


# --- a request body sent as it arrives (uploads) ---------------------------------------------------


@pytest.mark.parametrize("length", [None, 10], ids=["chunked", "content-length"])
def test_a_body_from_chunks_arrives_whole_in_either_framing(length):
    from testbed.openai_upstream import FakeOpenAI

    with FakeOpenAI() as fake:
        origin = pool(fake.url)
        pieces = iter([b"abc", b"", b"defg", b"hij"])
        answer = origin.request("POST", "/v1/upload-test", {}, pieces, length=length)
        answer.read()
        received = fake.requests[-1]
    assert received.raw == b"abcdefghij"
    framing = "transfer-encoding" if length is None else "content-length"
    assert received.headers[framing] == ("chunked" if length is None else "10")


def test_what_the_chunks_raise_is_raised_as_it_is():
    from testbed.openai_upstream import FakeOpenAI

    class ClientWentAway(Exception):
        pass

    def chunks():
        yield b"first"
        raise ClientWentAway

    with FakeOpenAI() as fake, pytest.raises(ClientWentAway):
        pool(fake.url).request("POST", "/v1/upload-test", {}, chunks())

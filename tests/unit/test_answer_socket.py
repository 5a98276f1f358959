"""The client's socket as gunicorn writes answers to it (service.server.answer_socket): what goes
out, in which writes, over a real socket pair."""

from __future__ import annotations

import socket
import tempfile

import pytest

from service.server.answer_socket import AnswerSocket
from tests.support.sockets import CountingSocket

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    counting = CountingSocket(ours)
    theirs.settimeout(2)
    yield counting, theirs
    counting.close()
    theirs.close()


def received(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


def test_a_whole_answers_head_goes_out_with_its_body_in_one_write(pair):
    sock, client = pair
    answer = AnswerSocket(sock)
    answer.hold_head()
    answer.sendall(HEAD)
    answer.sendall(b"hello")
    assert sock.writes == [HEAD + b"hello"]
    assert received(client, len(HEAD) + 5) == HEAD + b"hello"


def test_an_answer_not_held_goes_out_as_written(pair):
    sock, client = pair
    answer = AnswerSocket(sock)
    answer.sendall(HEAD)
    answer.sendall(b"hello")
    assert sock.writes == [HEAD, b"hello"]
    assert received(client, len(HEAD) + 5) == HEAD + b"hello"


def test_a_held_head_with_no_body_goes_out_on_flush_once(pair):
    sock, client = pair
    answer = AnswerSocket(sock)
    answer.hold_head()
    answer.sendall(HEAD)
    assert sock.writes == []
    answer.flush()
    answer.flush()
    assert sock.writes == [HEAD]
    assert received(client, len(HEAD)) == HEAD
    answer.sendall(b"next")  # the next answer is not held unless told
    assert sock.writes == [HEAD, b"next"]


def test_a_file_sent_after_a_held_head_comes_after_it(pair):
    sock, client = pair
    answer = AnswerSocket(sock)
    answer.hold_head()
    answer.sendall(HEAD)
    with tempfile.TemporaryFile() as file:
        file.write(b"hello")
        file.seek(0)
        answer.sendfile(file)
    assert received(client, len(HEAD) + 5) == HEAD + b"hello"


def test_ending_the_connection_sends_a_held_head_first(pair):
    sock, client = pair
    answer = AnswerSocket(sock)
    answer.hold_head()
    answer.sendall(HEAD)
    answer.shutdown(socket.SHUT_WR)
    assert received(client, len(HEAD)) == HEAD
    assert client.recv(10) == b""
    assert answer.fileno() == sock.fileno()  # everything else is the socket's

"""send_all: every byte arrives, in order, whether the kernel takes a write in one send or not."""

import gevent
import gevent.socket
import pytest

from service.core.sockets import send_all


@pytest.mark.parametrize("size", [1, 1400, 4 * 1024 * 1024])
def test_every_byte_arrives_in_order(size):
    writer, reader = gevent.socket.socketpair()
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)

    def read_all():
        got = bytearray()
        while len(got) < len(data):
            got += reader.recv(65536)
        return bytes(got)

    receiving = gevent.spawn(read_all)
    send_all(writer, data)  # 4 MB: more than a socket buffer takes at once
    assert receiving.get(timeout=10) == data
    writer.close()
    reader.close()


def test_a_memoryview_or_bytearray_is_sent_as_it_is():
    writer, reader = gevent.socket.socketpair()
    send_all(writer, memoryview(b"head and body")[5:])
    send_all(writer, bytearray(b"!"))
    got = b""
    with gevent.Timeout(5):
        while len(got) < len(b"and body!"):
            got += reader.recv(100)
    assert got == b"and body!"
    writer.close()
    reader.close()

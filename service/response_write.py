"""Gunicorn answers with a known length go out in one send: status line, headers and body.

Gunicorn's HTTP/1.1 writer sends the head and then the body, two system calls per answer. For the
proxy's small relayed answers the second send is a fifth of the latency the proxy adds (about
0.2 ms of the ~2 ms a request costs here; measured with `make bench`). Gunicorn has no setting or
hook for the response writer of HTTP/1.1, so `install()` wraps `Response.write` for the one case
that matters: the whole body of a fixed-length answer written at once (what the relay routes and
Flask do for every non-streamed answer). Streams, chunked bodies and anything else take
gunicorn's own path.
"""

from __future__ import annotations

import gunicorn
from gunicorn import util
from gunicorn.http import wsgi

# The gunicorn major version whose Response internals this was written (and is tested) against.
GUNICORN_MAJOR = 27
_INSTALLED = "_aiproxy_head_with_body"


def install() -> bool:
    """Wrap gunicorn's `Response.write` (once). False, changing nothing, on another gunicorn major
    version: its writer may differ, and two sends are slower but correct."""
    response = wsgi.Response
    if getattr(response, _INSTALLED, False):
        return True
    if gunicorn.version_info[0] != GUNICORN_MAJOR:
        return False
    original = response.write

    def write(self: wsgi.Response, data: bytes) -> None:
        if (
            not self.headers_sent
            and not self.chunked
            and not self._omits_body
            and self.response_length is not None
            and self.sent == 0
            and type(data) is bytes
            and len(data) == self.response_length
        ):
            head = self.default_headers()
            head.extend(f"{name}: {value}\r\n" for name, value in self.headers)
            head.append("\r\n")
            self.headers_sent = True
            self.sent = len(data)
            util.write(self.sock, "".join(head).encode("latin-1") + data)
            return
        original(self, data)

    response.write = write
    setattr(response, _INSTALLED, True)
    return True

"""Undoing the Content-Encoding (gzip or deflate) an upstream used although asked for none.

The proxy asks for uncompressed answers (`Accept-Encoding: identity`) and decodes should an
upstream compress anyway (a stream as it arrives), so clients, usage and redaction always see
plain JSON.
"""

from __future__ import annotations

import zlib

from service.core.errors import ProviderBadAnswer


def plain(encoding: str) -> bool:
    """Whether a Content-Encoding header value means the body is not encoded."""
    return encoding.strip().lower() in ("", "identity")


class Decoder:
    """Undoes a Content-Encoding piece by piece as the body arrives."""

    def __init__(self, encoding: str, provider: str = "") -> None:
        self.encoding = encoding.strip().lower()
        self.provider = provider
        if self.encoding not in ("gzip", "x-gzip", "deflate"):
            raise ProviderBadAnswer(
                f"The upstream answered with an encoding the proxy cannot read ({self.encoding}).",
                provider=provider,
            )
        # 47: a gzip or a zlib header, either; raw deflate (as some servers send) is tried after.
        self._zlib = zlib.decompressobj(47)
        self._fed = False

    def feed(self, data: bytes) -> bytes:
        try:
            decoded = self._zlib.decompress(data)
        except zlib.error:
            if self._fed or self.encoding != "deflate":
                raise self.failure() from None
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                decoded = self._zlib.decompress(data)
            except zlib.error:
                raise self.failure() from None
        self._fed = self._fed or bool(data)
        return decoded

    def end(self) -> bytes:
        """What is left once the body has ended."""
        return self._zlib.flush()

    @property
    def complete(self) -> bool:
        return self._zlib.eof

    def failure(self) -> ProviderBadAnswer:
        return ProviderBadAnswer(
            f"The upstream's {self.encoding} answer could not be decoded.", provider=self.provider
        )


def decoded(body: bytes, encoding: str, provider: str = "") -> bytes:
    """`body` without the Content-Encoding an upstream used although asked for none."""
    if plain(encoding):
        return body
    decoder = Decoder(encoding, provider)
    data = decoder.feed(body) + decoder.end()
    if not decoder.complete:
        raise decoder.failure()  # cut short: part of the answer is missing
    return data

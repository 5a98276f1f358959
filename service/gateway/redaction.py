"""Blanking a provider key out of whatever an upstream sends, however the key is spelled.

Every byte an OpenAI-compatible upstream answers passes through here before anything else reads
it (relayed bodies, stream events, header values, the error bodies whose messages go into 502s and
log lines, the answers grading and `/test/openai` parse), so nothing derived from it can hold the
key: this is the one place, and the proxy's own answers and log lines stay clean because their
upstream text was cleaned at the door.

A JSON text can spell each character of the key literally, as a `\\uXXXX` escape (either case of
hex) or, for `/`, `"` and `\\`, as a short escape; JSON held in a JSON string (a model's JSON
answer inside `content`) doubles the backslashes. `Redactor.bytes` matches all of those at once:
one pattern where each character is itself or any escape of it behind any number of backslashes
(a few more spellings than JSON allows, which only blanks more). Plain text is matched by the
same pattern. The common case costs two substring scans: no backslash and no key, nothing to do.

A stream adds one more way: the key split across events, which the client joins (`"...sk-ab"` then
`"cd..."`). `EventRedactor` takes the whole events of one upstream read together (`feed_events`:
in the common case, two scans of the read), and decodes an event only when it may matter (a
backslash, the key, a string that ends with the start of the key, or a key start still open), and
for each accumulating string (content, arguments...) keeps the end of its text that could begin
the key. Events holding such an end are held back, not sent, until the following text at the same
place shows whether the key completes: if it does, the key's pieces are blanked in every held
event (the first piece becomes `[FILTERED]`); if not, the events go out unchanged. Events are
never reordered, and text never moves between events, so a false alarm changes nothing but a short
delay of the event that ended with the key's first characters. (Blanking only the part of the key
in the later event, with a tail of the text before it, would leave the earlier part, up to all of
the key but its last character, with the client.)
"""

from __future__ import annotations

import builtins
import json
import re
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, TypeAlias

from service.gateway.sse import split_events

FILTERED = "[FILTERED]"
# Shorter "keys" would blank ordinary words; real provider keys are long.
MIN_KEY_LENGTH = 8
# The string fields whose pieces a client joins across stream events (chat and completion deltas,
# tool-call arguments, reasoning, the Responses API's `delta`).
ACCUMULATED = frozenset(
    {"content", "text", "arguments", "refusal", "reasoning", "reasoning_content", "delta"}
)
# Events held back at most, so an upstream interleaving many choices cannot stall a stream; past
# it the oldest goes out as it is.
MAX_HELD_EVENTS = 256

# Where a string is in an event's JSON: the keys and indexes down to it.
_Place: TypeAlias = tuple[object, ...]


def _spellings(char: str) -> str:
    """A pattern for one character of the key as any JSON text (at any depth of nesting) spells it."""
    hex_code = "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{ord(char):04x}")
    return rf"\\*(?:{re.escape(char)}|u{hex_code})"


@lru_cache(maxsize=64)
def redactor(key: str) -> Redactor | None:
    """The redactor of `key` (built once per key); None for no key or one too short to blank."""
    return Redactor(key) if key and len(key) >= MIN_KEY_LENGTH else None


class Redactor:
    """Blanks one key out of bytes and text."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.key_bytes = key.encode()
        pattern = "".join(_spellings(char) for char in key)
        self._text = re.compile(pattern)
        self._bytes = re.compile(pattern.encode())
        # A string value that ends with a proper start of the key: `"...s"`, `"...sk"`, ... (not a
        # member name, which a colon follows). Only then can an event begin a key the next ends.
        nested = ""
        for char in reversed(key[1:-1]):
            nested = f"(?:{re.escape(char)}{nested})?"
        self._open_start = re.compile(f'{re.escape(key[0])}{nested}"(?!\\s*:)'.encode())
        self._longest_spelling = 16 * len(key)
        # The escapes that can spell a character of the key (`\\n` in text cannot, and is common).
        self._escapes = [b"\\u", b"\\\\"] + [b"\\" + char.encode() for char in '/"' if char in key]

    def bytes(self, data: bytes) -> bytes:
        if b"\\" not in data and self.key_bytes not in data:
            return data
        return self._bytes.sub(FILTERED.encode(), data)

    def text(self, value: str) -> str:
        if "\\" not in value and self.key not in value:
            return value
        return self._text.sub(FILTERED, value)

    def stream(self) -> EventRedactor:
        return EventRedactor(self)

    def may_open_key(self, frame: builtins.bytes) -> bool:  # `bytes` here is the method above
        """Whether a string in `frame` may end with the start of the key (escaped or not)."""
        if b"\\" in frame and any(escape in frame for escape in self._escapes):
            return True
        return self._open_start.search(frame) is not None

    def open_start(self, text: str) -> int:
        """The length of the longest end of `text` that begins a spelling of the key (0: none)."""
        if "\\" in text:
            match = self._open_spelling.search(text, max(0, len(text) - self._longest_spelling))
            return len(text) - match.start() if match else 0
        key = self.key
        start = max(0, len(text) - len(key) + 1)
        while (start := text.find(key[0], start)) != -1:
            if key.startswith(text[start:]):
                return len(text) - start
            start += 1
        return 0

    @cached_property
    def _open_spelling(self) -> re.Pattern[str]:
        # Decoded text with backslashes may spell the key with escapes (JSON in a JSON string).
        # Built when first needed: a long key's pattern takes a few milliseconds to compile.
        return _open_spelling(self.key)

    def spelled_in(self, text: str) -> tuple[int, int] | None:
        """Where the first spelling of the key in `text` starts and ends, or None."""
        match = self._text.search(text)
        return match.span() if match else None


def _open_spelling(key: str) -> re.Pattern[str]:
    """A pattern for an end of text that begins some spelling of `key` but does not finish it:
    whole characters of it, then possibly part of the next one's escape (`\\`, `\\u00`)."""
    partial = r"\\+(?:u[0-9a-fA-F]{0,3})?"
    rest = f"(?:{partial})?"
    for char in reversed(key[1:-1]):
        rest = f"(?:{_spellings(char)}{rest}|{partial})?"
    return re.compile(f"(?:{_spellings(key[0])}{rest}|{partial})\\Z")


@dataclass(eq=False)
class _Event:
    """An event held back: its frame, and its decoded data once something in it was blanked."""

    frame: bytes
    data: dict[str, Any] | list[Any] | None = None
    edited: bool = False
    holds: int = 0  # open key starts (of any place) with a piece in this event

    def encoded(self) -> bytes:
        if not self.edited:
            return self.frame
        # The event's other lines (`event:`, `id:`) stay; its data is the blanked JSON.
        lines = [line + b"\n" for line in self.frame.splitlines() if line and not line.startswith(b"data:")]
        data = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False).encode()
        return b"".join(lines) + b"data: " + data + b"\n\n"


@dataclass(eq=False)
class _Piece:
    """The part of one string, from `start` on, that belongs to an open key start."""

    event: _Event
    container: Any  # the dict or list holding the string
    name: Any  # its key or index there
    start: int

    @property
    def text(self) -> str:
        text: str = self.container[self.name][self.start :]
        return text


@dataclass(eq=False)
class _OpenStart:
    """The text at one place of the stream that ends with the start of the key, in pieces."""

    pieces: list[_Piece] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(piece.text for piece in self.pieces)


class EventRedactor:
    """Redacts one stream's events (whole SSE frames) in order; see the module's docstring."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held: deque[_Event] = deque()
        self._open: dict[_Place, _OpenStart] = {}

    def feed_events(self, data: bytes) -> bytes:
        """What can go out now that `data` (one or more whole events) came, in one piece."""
        redactor = self._redactor
        data = redactor.bytes(data)
        if not self._open and not redactor.may_open_key(data):
            return data  # the common case: nothing held, nothing that could begin the key
        return b"".join(sent for frame in split_events(data) for sent in self._feed(frame))

    def feed(self, frame: bytes) -> list[bytes]:
        """The events that can go out now that `frame` came (none, it, or held ones and it)."""
        redactor = self._redactor
        frame = redactor.bytes(frame)
        if not self._open and not redactor.may_open_key(frame):
            return [frame]  # the common case: nothing held, nothing that could begin the key
        return self._feed(frame)

    def _feed(self, frame: bytes) -> list[bytes]:
        """`feed` for a frame already redacted whole."""
        event = _Event(frame, _event_data(frame))
        if event.data is not None:
            self._walk(event, event.data, ())
        elif frame.startswith(b"data: [DONE]"):
            self._close_all()  # the stream's end: no key start can complete any more
        self._held.append(event)
        if len(self._held) > MAX_HELD_EVENTS:
            self._close_all(self._held[0])
        ready = []
        while self._held and not self._held[0].holds:
            ready.append(self._held.popleft().encoded())
        return ready

    def flush(self) -> list[bytes]:
        """Every event still held (the stream ended or failed): unchanged, the key never completed."""
        self._close_all()
        ready = [event.encoded() for event in self._held]
        self._held.clear()
        return ready

    def _close_all(self, holding: _Event | None = None) -> None:
        """Give up the open key starts (those with a piece in `holding`, when given)."""
        for place, start in list(self._open.items()):
            if holding is None or any(piece.event is holding for piece in start.pieces):
                self._close(place)

    def _close(self, place: _Place) -> None:
        for piece in self._open.pop(place).pieces:
            piece.event.holds -= 1

    def _walk(self, event: _Event, value: Any, place: _Place) -> None:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for name, item in items:
            # A list's items are told apart by their own `index` when they have one (choices,
            # tool calls), as clients join them.
            step = item.get("index", name) if isinstance(item, dict) and isinstance(value, list) else name
            if isinstance(item, str):
                self._string(event, value, name, (*place, step))
            elif isinstance(item, dict | list):
                self._walk(event, item, (*place, step))

    def _string(self, event: _Event, container: Any, name: Any, place: _Place) -> None:
        # The key whole in one string was blanked in the event's JSON text already.
        redactor = self._redactor
        text = container[name]
        if not (isinstance(name, str) and name in ACCUMULATED):
            return
        piece = _Piece(event, container, name, 0)
        start = self._open.get(place)
        if start is not None:
            joined = start.text + text
            found = redactor.spelled_in(joined)
            if found is not None and found[0] < len(joined) - len(text):
                self._blank([*start.pieces, piece], *found)
                text = container[name]
            elif (length := redactor.open_start(joined)) > len(text):
                # The start of the key still spans earlier events: keep those still in it.
                self._keep(start, piece, len(joined) - length)
                return
            self._close(place)
        length = redactor.open_start(text)
        if length:
            event.holds += 1
            self._open[place] = _OpenStart([_Piece(event, container, name, len(text) - length)])

    def _keep(self, start: _OpenStart, piece: _Piece, cut: int) -> None:
        """Trim `start` to the pieces after `cut` (its joined text's offset) and add `piece`."""
        kept: list[_Piece] = []
        offset = 0
        for old in start.pieces:
            size = len(old.text)
            if offset + size > cut:
                old.start += max(0, cut - offset)
                kept.append(old)
            else:
                old.event.holds -= 1
            offset += size
        piece.event.holds += 1
        start.pieces = [*kept, piece]

    def _blank(self, pieces: list[_Piece], begin: int, end: int) -> None:
        """Blank characters `begin` to `end` of the pieces' joined text (the first becomes FILTERED)."""
        offset = 0
        first = True
        for piece in pieces:
            text = piece.text
            start, stop = max(0, begin - offset), min(len(text), end - offset)
            offset += len(text)
            if start >= stop:
                continue
            whole = piece.container[piece.name]
            cut_from, cut_to = piece.start + start, piece.start + stop
            piece.container[piece.name] = whole[:cut_from] + (FILTERED if first else "") + whole[cut_to:]
            piece.event.edited = True
            first = False


def _event_data(frame: bytes) -> dict[str, Any] | list[Any] | None:
    """The JSON an event's `data:` lines carry, or None (`[DONE]`, a comment, not JSON)."""
    data = b"".join(line[5:] for line in frame.splitlines() if line.startswith(b"data:")).strip()
    if not data.startswith((b"{", b"[")):
        return None
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict | list) else None

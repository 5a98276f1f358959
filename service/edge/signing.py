"""Signed answers: an application can trust an answer a browser relays back to it.

When the end-user token carries `"sign": true`, or the request the header `X-AIProxy-Sign: 1`,
the answer is signed with the proxy's Ed25519 key (the secret `answer_signing_key`):

- a whole answer carries `X-AIProxy-Signature: kid=<key id>; sig=<base64url signature>`, the
  signature over `<id>\\n<SHA-256 of the body, hex>`;
- a stream's last event before `data: [DONE]` is `{"object": "aiproxy.signature", "choices": [],
  "aiproxy_signature": {"kid", "sha256", "sig"}}`, over `<id>\\n<SHA-256 of the concatenated
  content, hex>` (the text of every delta, as the browser assembled it);

where `<id>` is the token's id, or the request id (`X-Request-Id`) when there is none.
`GET /v1/signing-keys` publishes the public keys as a JSON Web Key Set (service.edge.routes.signing_keys).

The secret holds one or more keys separated by commas, each a PEM private key or any text (a
seed: its SHA-256 is the private key, so a generated password works); the first signs, all are
published, so a key is rotated by putting the new one first and dropping the old one later.
Without the secret (a workstation), a key made at start-up stands in, with one WARNING.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

from service.config.secrets import ANSWER_SIGNING_KEY, SecretStore
from service.core.responses import ClientResponse, json_bytes
from service.gateway.sse import DONE, event_data, split_events

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-AIProxy-Signature"
SIGN_HEADER = "HTTP_X_AIPROXY_SIGN"  # X-AIProxy-Sign: 1 asks for a signed answer


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def message(signed_id: str, sha256_hex: str) -> bytes:
    """What is signed."""
    return f"{signed_id}\n{sha256_hex}".encode()


def _private_key(text: str) -> Ed25519PrivateKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        return key
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(text.encode()).digest())


class AnswerSigner:
    """The proxy's signing keys, read from the secret (re-read when it changes)."""

    def __init__(self, store: SecretStore) -> None:
        self._store = store
        self._raw: str | None = None
        self._keys: list[tuple[str, Ed25519PrivateKey]] = []
        self._ephemeral: list[tuple[str, Ed25519PrivateKey]] | None = None

    def keys(self) -> list[tuple[str, Ed25519PrivateKey]]:
        raw = self._store.get(ANSWER_SIGNING_KEY)
        if raw is None:
            if self._ephemeral is None:
                self._ephemeral = [_with_kid(Ed25519PrivateKey.generate())]
                log.warning(
                    "No %s: answers are signed with a key made for this process only",
                    self._store.source_of(ANSWER_SIGNING_KEY),
                )
            return self._ephemeral
        if raw != self._raw:
            try:
                keys = [_with_kid(_private_key(part)) for part in raw.split(",") if part.strip()]
            except ValueError as error:
                log.error("The %s is not usable (%s); keeping the last one", ANSWER_SIGNING_KEY, error)
                keys = self._keys
            self._raw, self._keys = raw, keys
        return self._keys

    def public_keys(self) -> dict[str, Any]:
        """The JSON Web Key Set of every key (GET /v1/signing-keys)."""
        return {
            "keys": [
                {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": _public(key)}
                for kid, key in self.keys()
            ]
        }

    def sign(self, signed_id: str, sha256_hex: str) -> tuple[str, str]:
        """(kid, base64url signature)."""
        kid, key = self.keys()[0]
        return kid, b64url(key.sign(message(signed_id, sha256_hex)))

    def signed(self, answer: ClientResponse, signed_id: str) -> ClientResponse:
        """`answer`, signed: its header for a whole answer, its last event for a stream."""
        content_type = answer.header("Content-Type") or ""
        if content_type.startswith("text/event-stream"):
            answer.body = self._signed_stream(answer.body, signed_id)
            return answer
        chunks = answer.body
        body = b"".join(chunks)
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        answer.body = [body]
        kid, signature = self.sign(signed_id, hashlib.sha256(body).hexdigest())
        answer.headers.append((SIGNATURE_HEADER, f"kid={kid}; sig={signature}"))
        return answer

    def _signed_stream(self, frames: Iterable[bytes], signed_id: str) -> Iterator[bytes]:
        # A piece may hold several whole events (all that one upstream read brought): its events
        # before `[DONE]` are hashed, and the signature event goes just before `[DONE]`.
        content = hashlib.sha256()
        iterator = iter(frames)
        try:
            for piece in iterator:
                if not signed_id:
                    yield piece
                    continue
                events = split_events(piece)
                done = next((i for i, event in enumerate(events) if event.strip() == DONE.strip()), None)
                for event in events if done is None else events[:done]:
                    data = event_data(event)
                    if data is not None:
                        content.update(event_text(data).encode())
                if done is None:
                    yield piece
                    continue
                signature = self._signature_event(signed_id, content.hexdigest())
                signed_id = ""  # signed once
                yield b"".join(events[:done]) + signature + b"".join(events[done:])
            if signed_id:
                yield self._signature_event(signed_id, content.hexdigest())  # a stream without [DONE]
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    def _signature_event(self, signed_id: str, sha256_hex: str) -> bytes:
        kid, signature = self.sign(signed_id, sha256_hex)
        value = {
            "object": "aiproxy.signature",
            "type": "aiproxy.signature",
            "choices": [],
            "aiproxy_signature": {"kid": kid, "sha256": sha256_hex, "sig": signature},
        }
        return b"data: " + json_bytes(value) + b"\n\n"


def event_text(data: dict[str, Any]) -> str:
    """The content an event adds: chat deltas, completion texts, Responses API text deltas."""
    added = data.get("delta")
    if data.get("type") == "response.output_text.delta" and isinstance(added, str):
        return added
    text = []
    choices = data.get("choices")
    for choice in choices if isinstance(choices, list) else []:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("content"), str):
            text.append(delta["content"])
        elif isinstance(choice.get("text"), str):
            text.append(choice["text"])
    return "".join(text)


def _public(key: Ed25519PrivateKey) -> str:
    return b64url(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def _with_kid(key: Ed25519PrivateKey) -> tuple[str, Ed25519PrivateKey]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16], key

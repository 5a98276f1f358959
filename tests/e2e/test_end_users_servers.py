"""Students as callers: end-user tokens minted the way the organisation mints them (RS256, its own
claim names) and with standard names (ES256, EdDSA), against two server processes sharing a real
Redis: verification, per-student limits, attribution without the student's id, browsers (CORS),
blocked models and signed answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
import uuid
from contextlib import ExitStack
from urllib.parse import urlsplit

import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from service.governance.key_store import hash_key
from testbed.openai_upstream import FakeOpenAI, Reply, Stream
from testbed.redis_server import RedisServer
from testbed.server import running_server
from tests.support.http import fetch
from tests.support.waiting import wait_until

PROVIDER_KEY = "sk-provider-key-end-users"
STORE_PASSWORD = "store-password-end-users"
HASH_KEY = "end-user-hash-key-for-the-tests"
SIGNING_SEED = "answer-signing-seed-for-the-tests"
ORIGIN = "https://studio.example.org"
SERVER_KEY = "aip_server-side-caller-key-000000000000000001"

ORG_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def pem(private) -> str:
    return private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


ORG_CLAIMS = {
    "end_user": "user_id",
    "expires": "expiration_time",
    "issued": "issued_at_time",
    "token_id": "token_id",
    "attributes": ["aichat_client_type", "level_id", "script_id", "lesson_id"],
    "blocked_models": "blocked_model_ids",
}
STORE = json.dumps(
    {
        "studio": {
            "keys": [hash_key("aip_studio-key-never-sent-by-a-browser-000001")],
            "rpm": 600,
            "end_user_tokens": {
                "public_keys": {"org-key-1": pem(ORG_KEY)},
                "algorithms": ["RS256"],
                "max_lifetime_s": 300,
                "replay": "reject",
                "claims": ORG_CLAIMS,
            },
            "end_user": {"rpm": 3, "tokens_per_day": 10_000_000, "budget_usd_per_day": 0.5},
            "origins": [ORIGIN],
            "blocked_models": ["gpt-4-retired"],
        },
        "lab": {
            "keys": [],
            "end_user_tokens": {
                "public_keys": [pem(EC_KEY), pem(ED_KEY)],
                "algorithms": ["ES256", "EdDSA"],
                "audience": "aiproxy",
                "max_lifetime_s": 300,
            },
            "end_user": {"rpm": 50},
        },
        "server": {
            "keys": [hash_key(SERVER_KEY)],
            "trust_end_user_header": True,
            "end_user": {"rpm": 2},
        },
    }
)


def org_token(user: str = "student-4242", *, lifetime: int = 60, issued: float | None = None, **more) -> str:
    """As the organisation's web app mints them: RS256, one minute, its own claim names."""
    now = time.time() if issued is None else issued
    claims = {
        "user_id": user,
        "aichat_client_type": "ai-tutor",
        "level_id": 7,
        "script_id": 12,
        "lesson_id": 3,
        "channel_id": "channel-abc",
        "token_id": uuid.uuid4().hex,
        "issued_at_time": int(now),
        "expiration_time": int(now) + lifetime,
        **more,
    }
    key = more.pop("_key", None) if "_key" in more else ORG_KEY
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "org-key-1"})


def lab_token(key, algorithm: str, *, audience: str = "aiproxy", sub: str = "learner-1") -> str:
    now = int(time.time())
    claims = {"iss": "lab", "sub": sub, "aud": audience, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, key, algorithm=algorithm)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict, claims: dict, signature: bytes = b"") -> str:
    parts = [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode())]
    return ".".join([*parts, b64(signature)])


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI(api_key=PROVIDER_KEY) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def servers(fake):
    with RedisServer(password=STORE_PASSWORD) as store, ExitStack() as stack:
        settings = {
            "OPENAI_BASE_URL": fake.url,
            "OPENAI_API_KEY": PROVIDER_KEY,
            "AIPROXY_CLIENT_KEYS": STORE,
            "AIPROXY_REDIS_URL": store.url,
            "AIPROXY_REDIS_PASSWORD": STORE_PASSWORD,
            "AIPROXY_END_USER_HASH_KEY": HASH_KEY,
            "AIPROXY_ANSWER_SIGNING_KEY": SIGNING_SEED,
            "AIPROXY_PRICES": json.dumps({"gpt-4o-mini": {"input": 10, "output": 10}}),
            "AIPROXY_WORKERS": "2",
            "LOG_FORMAT": "json",
        }
        yield [stack.enter_context(running_server(settings)) for _ in range(2)]


def sdk(server, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=token, max_retries=0, timeout=20)


def chat(server, token: str, model: str = "gpt-4o-mini", headers: dict | None = None):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    sent = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})}
    return fetch(server.url + "/v1/chat/completions", json.dumps(body).encode(), sent)


def error_of(answer) -> dict:
    return json.loads(answer.body)["error"]


def options(server, path: str, origin: str):
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    connection.request("OPTIONS", path, headers=headers)
    answer = connection.getresponse()
    answer.read()
    connection.close()
    return answer


def test_an_organisation_token_is_served_and_attributed_to_a_hashed_student(servers, fake):
    fake.enqueue(Reply(["Hello, student."]))
    with sdk(servers[0], org_token("student-attributed")) as client:
        completion = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    request_id = completion.headers["x-request-id"]
    assert completion.parse().choices[0].message.content == "Hello, student."

    def record() -> dict | None:
        found = [
            r
            for r in servers[0].log_records()
            if r.get("request_id") == request_id and "usage" in r["message"]
        ]
        return found[0] if found else None

    wait_until(record, timeout=5)
    usage = record()
    expected = hmac.new(HASH_KEY.encode(), b"student-attributed", hashlib.sha256).hexdigest()
    assert usage["client"] == "studio" and usage["end_user"] == expected
    assert usage["attributes"] == {
        "aichat_client_type": "ai-tutor",
        "level_id": "7",
        "script_id": "12",
        "lesson_id": "3",
    }

    def access_line() -> dict | None:
        lines = [r for r in servers[0].log_records() if r.get("request_id") == request_id and "_aws" in r]
        return lines[0] if lines else None

    # The access line is the request's last record, written once the answer has gone out.
    wait_until(access_line, timeout=5)
    access = access_line()
    assert access is not None and (access["Attribute"], access["end_user"]) == ("ai-tutor", expected)
    assert "student-attributed" not in servers[0].log() + servers[1].log()


def test_standard_tokens_signed_with_es256_and_eddsa_are_served(servers, fake):
    for key, algorithm in ((EC_KEY, "ES256"), (ED_KEY, "EdDSA")):
        fake.enqueue(Reply(["ok"]))
        assert chat(servers[1], lab_token(key, algorithm)).status == 200


@pytest.mark.parametrize(
    "token, reason",
    [
        (lambda: org_token(issued=time.time() - 600), "expired"),
        (lambda: org_token(issued=time.time() + 300), "future"),
        (lambda: org_token(lifetime=3600), "lifetime"),
        (lambda: lab_token(EC_KEY, "ES256", audience="another-service"), "audience"),
        (
            lambda: jwt.encode(
                {"user_id": "x", "expiration_time": int(time.time()) + 60},
                OTHER_RSA,
                algorithm="RS256",
                headers={"kid": "org-key-1"},
            ),
            "signature",
        ),
        (
            lambda: unsigned_token(
                {"alg": "none", "kid": "org-key-1"},
                {"user_id": "x", "expiration_time": int(time.time()) + 60},
            ),
            "algorithm",
        ),
        (lambda: hmac_with_public_key(), "algorithm"),
        (lambda: "aaa.bbb.ccc", "malformed"),
    ],
)
def test_tokens_that_are_not_valid_get_one_401(servers, fake, token, reason):
    before = len(fake.requests)
    answer = chat(servers[0], token())
    assert answer.status == 401, answer.body
    error = error_of(answer)
    assert error["code"] == "invalid_end_user_token" and error["type"] == "authentication_error"
    assert reason in error["message"]  # refused for the reason the test made it invalid
    assert len(fake.requests) == before  # no provider call


def hmac_with_public_key() -> str:
    """HS256 keyed with the issuer's public key: the classic algorithm confusion."""
    header = {"alg": "HS256", "typ": "JWT", "kid": "org-key-1"}
    claims = {"user_id": "x", "token_id": "t", "expiration_time": int(time.time()) + 60}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(pem(ORG_KEY).encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_a_token_used_twice_is_refused_on_either_server(servers, fake):
    token = org_token("student-replay")
    fake.enqueue(Reply(["once"]))
    assert chat(servers[0], token).status == 200
    replayed = chat(servers[1], token)
    assert replayed.status == 401
    assert "used before" in error_of(replayed)["message"]


def test_a_student_over_rpm_is_refused_while_another_student_goes_on(servers, fake):
    statuses = []
    fake.enqueue(*[Reply(["ok"])] * 3)  # the fourth never reaches the provider
    for number in range(4):
        statuses.append(chat(servers[number % 2], org_token("student-busy")))
    assert [answer.status for answer in statuses] == [200, 200, 200, 429]
    refused = statuses[-1]
    assert error_of(refused)["code"] == "end_user_rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    fake.enqueue(Reply(["ok"]))
    assert chat(servers[1], org_token("student-calm")).status == 200
    limits = fetch(
        servers[0].url + "/v1/limits", headers={"Authorization": f"Bearer {org_token('student-busy')}"}
    )
    mine = json.loads(limits.body)["end_user"]
    assert mine["limits"]["rpm"] == 3 and mine["remaining"]["requests_this_minute"] == 0


def test_a_server_side_caller_names_its_end_user_in_a_header(servers, fake):
    statuses = []
    fake.enqueue(*[Reply(["ok"])] * 2)
    for number in range(3):
        answer = chat(servers[number % 2], SERVER_KEY, headers={"X-AIProxy-End-User": "pupil-9"})
        statuses.append(answer.status)
    assert statuses == [200, 200, 429]
    fake.enqueue(Reply(["ok"]))
    assert chat(servers[0], SERVER_KEY, headers={"X-AIProxy-End-User": "pupil-10"}).status == 200


def test_models_blocked_by_the_token_or_the_entry_are_403(servers, fake):
    before = len(fake.requests)
    for token, model in (
        (org_token(blocked_model_ids=["gpt-4o"]), "gpt-4o"),
        (org_token(), "gpt-4-retired"),
    ):
        answer = chat(servers[0], token, model=model)
        assert answer.status == 403
        assert error_of(answer)["code"] == "model_not_allowed"
    assert len(fake.requests) == before


def test_cors_is_answered_for_a_listed_origin_only(servers, fake):
    listed = options(servers[0], "/v1/chat/completions", ORIGIN)
    assert listed.status == 204
    assert listed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "authorization" in listed.headers["Access-Control-Allow-Headers"].lower()
    assert listed.headers.get("Access-Control-Allow-Credentials") is None
    assert options(servers[1], "/v1/limits", ORIGIN).status == 204
    other = options(servers[0], "/v1/chat/completions", "https://evil.example.com")
    assert other.headers.get("Access-Control-Allow-Origin") is None
    assert other.status == 403
    fake.enqueue(Reply(["from a browser"]))
    answer = chat(servers[1], org_token(), headers={"Origin": ORIGIN})
    assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    from_elsewhere = chat(servers[1], lab_token(ED_KEY, "EdDSA"), headers={"Origin": ORIGIN})
    assert from_elsewhere.status == 403  # the lab lists no origin


def test_a_client_key_sent_from_a_browser_is_refused(servers, fake):
    before = len(fake.requests)
    answer = chat(servers[0], SERVER_KEY, headers={"Origin": ORIGIN})
    assert answer.status == 403 and error_of(answer)["code"] == "client_key_from_browser"
    assert len(fake.requests) == before


def published_key(server, kid: str) -> Ed25519PublicKey:
    keys = json.loads(fetch(server.url + "/v1/signing-keys").body)["keys"]
    [key] = [key for key in keys if key["kid"] == kid]
    return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key["x"] + "=="))


def test_a_signed_answer_verifies_with_the_published_key(servers, fake):
    fake.enqueue(Reply(["Signed and sealed."]))
    token = org_token()
    token_id = jwt.decode(token, options={"verify_signature": False})["token_id"]
    answer = chat(servers[0], token, headers={"X-AIProxy-Sign": "1"})
    assert answer.status == 200
    fields = dict(part.strip().split("=", 1) for part in answer.headers["X-AIProxy-Signature"].split(";"))
    digest = hashlib.sha256(answer.body).hexdigest()
    key = published_key(servers[1], fields["kid"])  # the other server publishes the same key
    key.verify(base64.urlsafe_b64decode(fields["sig"] + "=="), f"{token_id}\n{digest}".encode())


def test_a_signed_stream_ends_with_a_signature_over_its_content(servers, fake):
    fake.enqueue(Stream(["Str", "eam", "ed"]))
    token = org_token()
    token_id = jwt.decode(token, options={"verify_signature": False})["token_id"]
    with sdk(servers[1], token) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_headers={"X-AIProxy-Sign": "1"},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Streamed"
    signature = chunks[-1].model_extra["aiproxy_signature"]
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert signature["sha256"] == digest
    key = published_key(servers[0], signature["kid"])
    key.verify(base64.urlsafe_b64decode(signature["sig"] + "=="), f"{token_id}\n{digest}".encode())

"""End-user tokens (service.governance.end_user_tokens) and the key store fields that declare them:
what an entry may say, refused at load in one line naming the field, and what a token must be."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from service.governance.end_user_tokens import InvalidToken, looks_like_token
from service.governance.end_users import EndUserHasher
from service.governance.key_store import hash_key, parse_key_store
from service.governance.limits import Limits

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
NOW = time.time()


def pem(private) -> str:
    return private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def store(**tokens):
    policy = {"public_keys": {"k1": pem(RSA_KEY)}, "algorithms": ["RS256"], **tokens}
    entry = {"keys": [hash_key("aip_x")], "end_user_tokens": policy, "end_user": {"rpm": 5}}
    return parse_key_store(json.dumps({"app": entry}), Limits(60, 10))


def token(key=RSA_KEY, algorithm="RS256", headers=None, **claims) -> str:
    base = {"sub": "s1", "iat": int(NOW), "exp": int(NOW) + 60, "jti": "t1"}
    payload = {name: value for name, value in {**base, **claims}.items() if value is not None}
    return jwt.encode(
        payload, key, algorithm=algorithm, headers={"kid": "k1"} if headers is None else headers
    )


@pytest.mark.parametrize(
    "policy, field",
    [
        ({"algorithms": ["HS256"]}, "end_user_tokens.algorithms"),
        ({"algorithms": ["none"]}, "end_user_tokens.algorithms"),
        ({"algorithms": ["ES256"]}, "end_user_tokens.public_keys"),  # an RSA key fits no ES256
        ({"public_keys": ["not a key"]}, "end_user_tokens.public_keys"),
        ({"max_lifetime_s": 0}, "end_user_tokens.max_lifetime_s"),
        ({"replay": "sometimes"}, "end_user_tokens.replay"),
        ({"claims": {"end_user": "user id"}}, "end_user_tokens.claims.end_user"),
        ({"claims": {"colour": "c"}}, "end_user_tokens.claims"),
        ({"jwks_url": "https://keys.example.org/jwks.json"}, "end_user_tokens"),  # both keys and a URL
        ({"surprise": 1}, "end_user_tokens"),
    ],
)
def test_a_bad_token_policy_is_refused_at_load_naming_its_field(policy, field):
    with pytest.raises(ValueError) as refused:
        store(**policy)
    assert f'"{field}' in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "entry, field",
    [
        ({"end_user": {"rpm": 0}}, "end_user.rpm"),
        ({"end_user": {"budget_usd_per_day": -1}}, "end_user.budget_usd_per_day"),
        ({"end_user": {"hourly": 1}}, "end_user"),
        ({"trust_end_user_header": "yes"}, "trust_end_user_header"),
        ({"origins": ["https://a.example.org/path"]}, "origins"),
        ({"models": "gpt-4o"}, "models"),
    ],
)
def test_bad_end_user_fields_are_refused_at_load_naming_them(entry, field):
    with pytest.raises(ValueError) as refused:
        parse_key_store(json.dumps({"app": {"keys": [], **entry}}), Limits(60, 10))
    assert f'"{field}' in str(refused.value)


def test_origins_need_tokens_since_a_browser_never_holds_a_key():
    with pytest.raises(ValueError, match="origins"):
        parse_key_store(
            json.dumps({"app": {"keys": [], "origins": ["https://a.example.org"]}}), Limits(60, 10)
        )


def test_a_valid_token_names_its_client_by_kid_and_its_claims():
    client, claims = store().verify_token(token(), NOW)
    assert client.name == "app" and (claims.end_user, claims.token_id) == ("s1", "t1")


@pytest.mark.parametrize(
    "claims, reason",
    [
        ({"exp": int(NOW) - 31}, "expired"),
        ({"iat": int(NOW) + 31, "exp": int(NOW) + 90}, "future"),
        ({"exp": int(NOW) + 400}, "lifetime"),
        ({"sub": ""}, "end user"),
        ({"exp": "tomorrow"}, "expiry"),
        ({"iss": "another-app"}, "iss"),
    ],
)
def test_tokens_are_refused_for_their_times_claims_and_issuer(claims, reason):
    with pytest.raises(InvalidToken, match=reason):
        store().verify_token(token(**claims), NOW)


def test_clock_skew_of_thirty_seconds_is_allowed():
    store().verify_token(token(iat=int(NOW) + 29, exp=int(NOW) + 89), NOW)
    store().verify_token(token(exp=int(NOW) - 29), NOW)


def test_a_token_id_is_required_when_replays_are_rejected():
    with pytest.raises(InvalidToken, match="token id"):
        store(replay="reject").verify_token(token(jti=None), NOW)


def test_an_unknown_kid_or_issuer_names_no_client():
    with pytest.raises(InvalidToken, match="no client"):
        store().verify_token(token(headers={"kid": "k9"}), NOW)


def test_standard_tokens_are_found_by_their_issuer_and_algorithm():
    policy = {"public_keys": [pem(EC_KEY), pem(ED_KEY)], "algorithms": ["ES256", "EdDSA"], "audience": "aip"}
    entry = {"keys": [], "end_user_tokens": policy}
    keys = parse_key_store(json.dumps({"lab": entry}), Limits(60, 10))
    for key, algorithm in ((EC_KEY, "ES256"), (ED_KEY, "EdDSA")):
        signed = token(key, algorithm, headers={}, iss="lab", aud="aip")
        assert keys.verify_token(signed, NOW)[0].name == "lab"
    with pytest.raises(InvalidToken, match="audience"):
        keys.verify_token(token(EC_KEY, "ES256", headers={}, iss="lab", aud="other"), NOW)


def test_the_organisations_claim_names_map_to_the_standard_ones():
    names = {
        "end_user": "user_id",
        "expires": "expiration_time",
        "issued": "issued_at_time",
        "token_id": "token_id",
        "attributes": ["aichat_client_type", "level_id"],
        "blocked_models": "blocked_model_ids",
    }
    signed = jwt.encode(
        {
            "user_id": 42,
            "expiration_time": int(NOW) + 60,
            "issued_at_time": int(NOW),
            "token_id": "abc",
            "aichat_client_type": "ai-tutor",
            "level_id": 3,
            "blocked_model_ids": ["gpt-4o"],
        },
        RSA_KEY,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    _, claims = store(claims=names).verify_token(signed, NOW)
    assert (claims.end_user, claims.token_id, claims.blocked_models) == ("42", "abc", frozenset({"gpt-4o"}))
    assert claims.attributes == {"aichat_client_type": "ai-tutor", "level_id": "3"}


def test_only_three_part_values_are_taken_for_tokens():
    assert looks_like_token("a.b.c") and not looks_like_token("aip_abc") and not looks_like_token("a.b")


def test_the_end_user_hash_is_keyed_and_stable():
    class Secrets:
        def __init__(self, value):
            self.value = value

        def get(self, name):
            return self.value

        def source_of(self, name):
            return "AIPROXY_END_USER_HASH_KEY"

    one, same, other = EndUserHasher(Secrets("k")), EndUserHasher(Secrets("k")), EndUserHasher(Secrets("j"))
    assert one("student") == same("student") != other("student")
    assert "student" not in one("student") and len(one("student")) == 64


def test_keys_are_fetched_from_a_jwks_url_and_cached():
    import http.server
    import threading

    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    served = []

    class Keys(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            served.append(self.path)
            body = json.dumps({"keys": [{**jwk, "kid": "remote-1", "alg": "RS256"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/jwks.json"
        policy = {"jwks_url": url, "algorithms": ["RS256"]}
        keys = parse_key_store(json.dumps({"app": {"keys": [], "end_user_tokens": policy}}), Limits(60, 10))
        for _ in range(3):
            signed = token(headers={"kid": "remote-1"}, iss="app")
            assert keys.verify_token(signed, NOW)[0].name == "app"
        assert served == ["/jwks.json"]  # fetched once, then cached
        with pytest.raises(InvalidToken, match="kid"):
            keys.verify_token(token(headers={"kid": "unknown"}, iss="app"), NOW)
    finally:
        server.shutdown()


def test_a_stream_whose_pieces_hold_several_events_is_signed_once_just_before_done():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from service.config.secrets import SecretStore
    from service.edge.signing import AnswerSigner, message

    signer = AnswerSigner(SecretStore({"AIPROXY_ANSWER_SIGNING_KEY": "a signing secret"}, None, None))
    events = [
        b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n',
        b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n',
        b'data: {"choices":[{"delta":{"content":"!"}}]}\n\n',
        b"data: [DONE]\n\n",
    ]
    # As the relay hands them over: what one upstream read brought, [DONE] inside the last piece.
    pieces = [events[0] + events[1], events[2] + events[3]]
    out = b"".join(signer._signed_stream(iter(pieces), "token-1"))
    sent = out.split(b"\n\n")[:-1]
    assert [e + b"\n\n" for e in sent[:3]] == events[:3] and sent[-1] == b"data: [DONE]"
    signature = json.loads(sent[3].removeprefix(b"data: "))["aiproxy_signature"]
    assert signature["sha256"] == hashlib.sha256(b"Hello!").hexdigest()
    (key,) = signer.public_keys()["keys"]
    public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key["x"] + "=="))
    padded = signature["sig"] + "=" * (-len(signature["sig"]) % 4)
    public.verify(base64.urlsafe_b64decode(padded), message("token-1", signature["sha256"]))

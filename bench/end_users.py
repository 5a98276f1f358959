"""`python -m bench.end_users`: what an end-user token adds to a request (issue 29's bench point).

One proxy process (one worker) with a shared store (a real Redis) and the fake upstream; rounds
alternate a client-key request and a token request (RS256, the organisation's claim names, each
token minted beforehand and used once: `replay: "reject"`, and per-end-user limits), one at a
time on a kept-alive connection each. The verdict: the median over rounds of p50(token) -
p50(client key) is under 0.3 ms.

    python -m bench.end_users                   # 5 rounds of 300 requests each way
    python -m bench.end_users --rounds 2 --requests 100
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
import uuid
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench.processes import fake_upstream, proxy_server
from service.governance.key_store import hash_key
from testbed.redis_server import RedisServer
from testbed.server import free_port

BUDGET_MS = 0.3
KEY = "aip_bench-end-users-client-key-0000000000000001"
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()


def store_for(private: rsa.RSAPrivateKey, budget: bool = False) -> str:
    public = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    entry = {
        "keys": [hash_key(KEY)],
        "rpm": 100000,
        "max_concurrent": 1000,
        "end_user_tokens": {
            "public_keys": {"bench": public},
            "algorithms": ["RS256"],
            "replay": "reject",
            "claims": {"end_user": "user_id", "expires": "expiration_time", "token_id": "token_id"},
        },
        # Limits that let the answer go out before settling (a budget settles first, as a
        # client's does: `python -m bench.end_users --budget` measures that too).
        "end_user": {"rpm": 100000, **({"budget_usd_per_day": 100} if budget else {})},
    }
    return json.dumps({"bench": entry})


def tokens(private: rsa.RSAPrivateKey, count: int) -> list[str]:
    now = int(time.time())
    return [
        jwt.encode(
            {"user_id": f"s{n % 50}", "token_id": uuid.uuid4().hex, "expiration_time": now + 280},
            private,
            algorithm="RS256",
            headers={"kid": "bench"},
        )
        for n in range(count)
    ]


def timed(connection: http.client.HTTPConnection, bearer: str) -> float:
    started = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", BODY, {"Authorization": f"Bearer {bearer}"})
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        raise RuntimeError(f"answered {answer.status}: {answer.read()[:200]!r}")
    return time.perf_counter() - started


def round_p50s(keyed, tokened, minted: list[str]) -> tuple[float, float]:
    """p50 of client-key and of token requests, sent alternately (the same machine for both)."""
    key_times, token_times = [], []
    for token in minted:
        key_times.append(timed(keyed, KEY))
        token_times.append(timed(tokened, token))
    return statistics.median(key_times), statistics.median(token_times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.end_users", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--budget", action="store_true", help="give end users a daily budget too")
    args = parser.parse_args(argv)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    extra = {"AIPROXY_CLIENT_KEYS": store_for(private, args.budget), "AIPROXY_END_USER_HASH_KEY": "bench"}
    added = []
    with fake_upstream(free_port()) as upstream, RedisServer() as store:
        extra["AIPROXY_REDIS_URL"] = store.url
        with proxy_server(upstream, 1, extra) as server:
            parts = urlsplit(server.url)
            keyed = http.client.HTTPConnection(parts.hostname, parts.port)
            tokened = http.client.HTTPConnection(parts.hostname, parts.port)
            round_p50s(keyed, tokened, tokens(private, 50))  # warm up both paths
            for number in range(args.rounds):
                key_p50, token_p50 = round_p50s(keyed, tokened, tokens(private, args.requests))
                added.append((token_p50 - key_p50) * 1000)
                print(
                    f"  round {number + 1}: key p50 {key_p50 * 1000:.3f} ms, token +{added[-1]:.3f} ms",
                    file=sys.stderr,
                )
    median = statistics.median(added)
    verdict = "met   " if median < BUDGET_MS else "MISSED"  # as `python -m bench` writes its verdicts
    print(f"{verdict}  a token request adds under {BUDGET_MS} ms at the median: {median:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

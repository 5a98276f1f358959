"""The client key store: parsing, validation messages, key lookup, the Authorization header."""

import json

import pytest

from service.governance.auth import presented_key
from service.governance.key_store import KeyStore, hash_key, parse_key_store
from service.governance.limits import Limits

DEFAULTS = Limits(rpm=600, max_concurrent=50)
WEB_KEY = "aip_web-key-one"
WEB_KEY_2 = "aip_web-key-two"
BATCH_KEY = "aip_batch-key"


def store(data) -> KeyStore:
    return parse_key_store(json.dumps(data), DEFAULTS)


def test_a_key_is_stored_as_its_sha256_hex():
    # The published SHA-256 test vector for "abc" (FIPS 180-2).
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_each_key_finds_its_client_and_nothing_else_matches():
    keys = store(
        {
            "web": {"keys": [hash_key(WEB_KEY), hash_key(WEB_KEY_2)]},
            "batch": {"keys": [hash_key(BATCH_KEY)], "rpm": 30, "max_concurrent": 2},
        }
    )
    assert keys.authenticate(WEB_KEY).name == "web"
    assert keys.authenticate(WEB_KEY_2).name == "web"
    assert keys.authenticate(BATCH_KEY).name == "batch"
    for wrong in ("aip_web-key-on", WEB_KEY + "x", hash_key(WEB_KEY), "", WEB_KEY.upper()):
        assert keys.authenticate(wrong) is None


def test_limits_default_when_an_entry_sets_none():
    keys = store({"web": {"keys": []}, "batch": {"keys": [], "rpm": 30, "max_concurrent": 2}})
    assert keys.clients["web"].limits == DEFAULTS
    assert keys.clients["batch"].limits == Limits(rpm=30, max_concurrent=2)


def test_upper_case_hashes_are_accepted():
    assert store({"web": {"keys": [hash_key(WEB_KEY).upper()]}}).authenticate(WEB_KEY).name == "web"


def test_an_empty_store_accepts_no_key():
    assert store({}).authenticate(WEB_KEY) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"web": {"keys": [', "not valid JSON"),
        ("[]", "must be a JSON object of clients"),
        ('"aip_secret-looking-value"', "must be a JSON object of clients"),
        ('{"has space": {"keys": []}}', "client number 1 has an invalid name"),
        ('{"ok": {"keys": []}, "anonymous": {"keys": []}}', "client number 2 has an invalid name"),
        ('{"web": ["abc"]}', "client 'web' must be an object"),
        ('{"web": {"keys": [], "max_concurent": 5}}', "client 'web' has 1 unknown field(s)"),
        ('{"web": {}}', "client 'web' needs \"keys\""),
        ('{"web": {"keys": "abc"}}', "client 'web' needs \"keys\""),
        ('{"web": {"keys": ["abc123"]}}', "client 'web': keys[0] is not a sha256 hex digest"),
        ('{"web": {"keys": [12]}}', "client 'web': keys[0] is not a sha256 hex digest"),
        ('{"web": {"keys": [], "rpm": 0}}', "client 'web': \"rpm\" must be a whole number"),
        ('{"web": {"keys": [], "rpm": "60"}}', "client 'web': \"rpm\" must be a whole number"),
        ('{"web": {"keys": [], "max_concurrent": true}}', '"max_concurrent" must be a whole number'),
        ('{"web": {"keys": [], "max_concurrent": 2.5}}', '"max_concurrent" must be a whole number'),
        # null is no number: it must not stand for "no limit" (a limiter cannot count to None).
        ('{"web": {"keys": [], "rpm": null}}', "client 'web': \"rpm\" must be a whole number"),
        ('{"web": {"keys": [], "max_concurrent": null}}', '"max_concurrent" must be a whole number'),
        ('{"web": {"keys": [], "tpm": 0}}', "client 'web': \"tpm\" must be a whole number"),
        ('{"web": {"keys": [], "cache": true}}', "client 'web': \"cache\" must be an object"),
        ('{"web": {"keys": [], "cache": {"ttl_s": 0}}}', '"cache.ttl_s" must be a whole number from 1'),
        ('{"web": {"keys": [], "cache": {"ttl": 60}}}', '"cache" has 1 unknown field(s)'),
        ('{"web": {"keys": [], "cache": {"namespace": "a b"}}}', '"cache.namespace" must be 1 to 64'),
        ('{"web": {"keys": [], "cache": {}, "cache_nondeterministic": 1}}', "must be true or false"),
        ('{"web": {"keys": [], "upstream_credentials": ["x"]}}', '"upstream_credentials" must map'),
        ('{"web": {"keys": [], "upstream_credentials": {"vertex": "Has Space"}}}', "secret names"),
    ],
)
def test_an_invalid_store_is_refused_with_a_message_naming_the_problem(raw, message):
    with pytest.raises(ValueError) as error:
        parse_key_store(raw, DEFAULTS)
    assert message in str(error.value)


def test_an_entry_turns_the_answer_cache_on_for_its_client_only():
    keys = store(
        {
            "web": {"keys": [hash_key(WEB_KEY)]},
            "batch": {
                "keys": [hash_key(BATCH_KEY)],
                "cache": {"ttl_s": 60, "namespace": "graders"},
                "cache_nondeterministic": True,
            },
        }
    )
    assert keys.authenticate(WEB_KEY).cache is None
    cache = keys.authenticate(BATCH_KEY).cache
    assert (cache.ttl_s, cache.max_answer_bytes, cache.namespace, cache.nondeterministic) == (
        60,
        1048576,
        "graders",
        True,
    )
    assert cache.owner("batch") == "namespace:graders"


def test_a_raw_key_pasted_instead_of_its_hash_is_named_but_never_echoed():
    with pytest.raises(ValueError) as error:
        store({"web": {"keys": [hash_key(BATCH_KEY), WEB_KEY]}})
    text = str(error.value)
    assert "keys[1]" in text and "looks like a key" in text and "service.keys hash" in text
    assert WEB_KEY not in text and hash_key(BATCH_KEY) not in text


def test_an_invalid_client_name_is_not_echoed():
    # Someone pasting a key where the client name goes must not find it in the logs.
    with pytest.raises(ValueError) as error:
        store({"web": {"keys": []}, f"{WEB_KEY} ": {"keys": []}})
    assert WEB_KEY not in str(error.value)


def test_json_errors_give_a_position_not_the_content():
    with pytest.raises(ValueError) as error:
        parse_key_store('{"web": {"keys": ["aip_oops"' + "\n", DEFAULTS)
    assert "line 2 column 1" in str(error.value)
    assert "aip_oops" not in str(error.value)


def test_one_hash_cannot_belong_to_two_clients():
    digest = hash_key(WEB_KEY)
    with pytest.raises(ValueError, match="also a key of client 'web'"):
        store({"web": {"keys": [digest]}, "batch": {"keys": [digest.upper()]}})


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer aip_abc", "aip_abc"),
        ("bearer aip_abc", "aip_abc"),
        ("BEARER   aip_abc  ", "aip_abc"),
        ("aip_abc", "aip_abc"),  # the bare key of the original service's clients
        ("  aip_abc ", "aip_abc"),
        ("Bearer", ""),
        ("Bearer ", ""),
        ("", ""),
        ("Basic dXNlcjpwYXNz", "Basic dXNlcjpwYXNz"),  # never matches a stored key
    ],
)
def test_the_key_is_read_from_bearer_or_bare_authorization(header, key):
    assert presented_key(header) == key


def test_credentials_per_client_name_only_configured_upstreams():
    raw = '{"tutor": {"keys": [], "upstream_credentials": {"vertex": "vertex_sa_tutor", "azure": "k"}}}'
    with pytest.raises(ValueError, match="not configured: 'azure'"):
        parse_key_store(raw, DEFAULTS, {"openai", "vertex"})
    store = parse_key_store(raw.replace(', "azure": "k"', ""), DEFAULTS, {"openai", "vertex"})
    assert store.clients["tutor"].upstream_credentials == {"vertex": "vertex_sa_tutor"}

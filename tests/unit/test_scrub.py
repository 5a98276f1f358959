from service.observability import FILTERED, scrub


def test_sensitive_keys_are_filtered_at_any_depth_and_case():
    data = {
        "headers": {"Authorization": "Bearer x", "X-Api-Key": "k", "Accept": "json"},
        "params": {"api-key": ["v"], "user_password": "p", "Client-Secret": "s", "model": "gpt"},
        "list": [{"Cookie": "c"}, "plain"],
    }
    cleaned = scrub(data)
    assert cleaned["headers"] == {"Authorization": FILTERED, "X-Api-Key": FILTERED, "Accept": "json"}
    assert cleaned["params"] == {
        "api-key": FILTERED,
        "user_password": FILTERED,
        "Client-Secret": FILTERED,
        "model": "gpt",
    }
    assert cleaned["list"] == [{"Cookie": FILTERED}, "plain"]
    assert data["headers"]["Authorization"] == "Bearer x"  # the input is not changed


def test_known_secret_values_are_blanked_inside_strings():
    cleaned = scrub({"message": "key sk-abcdef123456 was refused", "n": 3}, ["sk-abcdef123456", ""])
    assert cleaned == {"message": f"key {FILTERED} was refused", "n": 3}


def test_short_values_are_not_treated_as_secrets():
    # A one-letter "secret" would blank every "a" in a report; real keys are long.
    assert scrub("a cat", ["a"]) == "a cat"

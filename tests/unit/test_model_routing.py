"""Aliases and prefixes decide which provider serves a model."""

import json

import pytest

from service.config.model_aliases import ModelAlias, ModelTarget
from service.config.secrets import SecretStore
from service.config.setting import SettingsError
from service.gateway.routing import bedrock_model_id, build_router
from tests.support.app import make_settings

CLAUDE = "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def router_for(**settings):
    values = make_settings(**settings)
    return build_router(values, SecretStore({}, None, None))


def test_aliases_resolve_once_and_pick_the_provider():
    router = router_for(
        AIPROXY_MODEL_ALIASES=f'{{"claude": "{CLAUDE}", "fast": "gpt-4o-mini"}}',
        OPENAI_BASE_URL="http://vllm.internal:8000/v1",  # not OpenAI: it may serve `org/model` names
    )
    [claude] = router.deployments("claude")
    assert (claude.provider.name, claude.routed_name) == ("bedrock", CLAUDE)
    [fast] = router.deployments("fast")
    assert (fast.provider.name, fast.model) == ("openai", "gpt-4o-mini")
    [plain] = router.deployments("gpt-4o")
    assert (plain.provider.name, plain.model) == ("openai", "gpt-4o")
    assert router.deployment("bedrock/").provider.name == "openai"  # no model id: not a Bedrock model
    assert bedrock_model_id(CLAUDE) == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def test_settings_read_aliases_and_bedrock_models():
    settings = make_settings(
        AIPROXY_MODEL_ALIASES=f'{{"claude": "{CLAUDE}"}}',
        AIPROXY_BEDROCK_MODELS="amazon.nova-lite-v1:0, bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    )
    assert settings.model_aliases == {"claude": ModelAlias(((ModelTarget(CLAUDE),),))}
    assert settings.bedrock_models == (
        "amazon.nova-lite-v1:0",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    )
    router = build_router(settings, SecretStore({}, None, None))
    listed = router.bedrock.models() + router.listed_aliases()
    assert [m["id"] for m in listed] == ["bedrock/amazon.nova-lite-v1:0", CLAUDE, "claude"]
    assert all(m["object"] == "model" for m in listed)
    assert make_settings().model_aliases == {} and make_settings().bedrock_models == ()


@pytest.mark.parametrize("raw", ["claude=bedrock/x", '["claude"]', '{"claude": 3}', '{"": "gpt-4o"}'])
def test_malformed_aliases_stop_start_up_with_one_line(raw):
    with pytest.raises(SettingsError) as caught:
        make_settings(AIPROXY_MODEL_ALIASES=raw)
    assert "AIPROXY_MODEL_ALIASES" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_malformed_bedrock_model_list_stops_start_up():
    with pytest.raises(SettingsError, match="AIPROXY_BEDROCK_MODELS"):
        make_settings(AIPROXY_BEDROCK_MODELS="a.b,,c.d")


def test_a_group_is_ranks_tried_in_order_with_weights_within_a_rank():
    group = [
        [{"model": "a/m1", "weight": 9}, {"model": "a/m2", "weight": 1}],
        "bedrock.anthropic.x-v1:0",
        "m3",
    ]
    router = router_for(
        AIPROXY_UPSTREAMS=json.dumps({"a": {"base_url": "http://a.internal/v1", "key_env": "A_KEY"}}),
        AIPROXY_MODEL_ALIASES=json.dumps({"grader": group}),
    )
    firsts = [router.deployments("grader")[0].name for _ in range(400)]
    assert 0.8 < firsts.count("a/m1") / 400 < 0.97  # 9 to 1
    names = [d.name for d in router.deployments("grader")]
    assert set(names[:2]) == {"a/m1", "a/m2"} and names[2:] == ["bedrock/anthropic.x-v1:0", "openai/m3"]
    assert router.grouped() == {"a/m1", "a/m2", "bedrock/anthropic.x-v1:0", "openai/m3"}


def test_a_group_is_parsed_once_into_ranks_of_weighted_models():
    group = [[{"model": " a/m1 ", "weight": 3}, "a/m2"], " m3 "]
    settings = make_settings(AIPROXY_MODEL_ALIASES=json.dumps({" grader ": group}))
    assert settings.model_aliases == {
        "grader": ModelAlias(((ModelTarget("a/m1", 3.0), ModelTarget("a/m2")), (ModelTarget("m3"),)))
    }
    assert settings.model_aliases["grader"].models == ["a/m1", "a/m2", "m3"]


@pytest.mark.parametrize(
    "raw",
    [
        '{"x": []}',
        '{"x": [3]}',
        '{"x": [{"model": "m", "weight": 0}]}',
        '{"x": [[{"model": "m", "extra": 1}]]}',
        '{"x": [[]]}',
    ],
)
def test_malformed_model_groups_stop_start_up_with_one_line(raw):
    with pytest.raises(SettingsError) as caught:
        make_settings(AIPROXY_MODEL_ALIASES=raw)
    assert "AIPROXY_MODEL_ALIASES" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ('{"Bad Name": {"base_url": "http://x/v1"}}', "lower-case"),
        ('{"bedrock": {"base_url": "http://x/v1"}}', "names Amazon Bedrock"),
        ('{"a": {}}', "base_url"),
        ('{"a": {"base_url": "ftp://x"}}', "http"),
        ('{"a": {"base_url": "http://x", "colour": "red"}}', "unknown fields"),
        ('{"a": {"base_url": "http://x", "key_secret": "s", "key_env": "E"}}', "not both"),
        ('{"a": {"base_url": "http://x", "timeout": 0}}', "timeout"),
        ('{"a": {"type": "azure", "base_url": "http://x"}}', "type must be one of openai, vertex"),
        ('{"v": {"type": "vertex", "location": "us-central1"}}', "needs project"),
        ('{"v": {"type": "vertex", "project": "p", "location": "US Central"}}', "needs location"),
        (
            '{"v": {"type": "vertex", "project": "p", "location": "l", "key_secret": "k"}}',
            "has no key_secret",
        ),
        ('{"a": {"base_url": "http://x", "credentials_secret": "s"}}', "has no credentials_secret"),
    ],
)
def test_malformed_upstreams_stop_start_up_naming_the_problem(raw, says):
    with pytest.raises(SettingsError) as caught:
        make_settings(AIPROXY_UPSTREAMS=raw)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_vertex_upstream_reaches_the_endpoint_its_project_and_location_name():
    vertex = {"type": "vertex", "project": "my-project", "location": "us-central1"}
    upstreams = make_settings(
        AIPROXY_UPSTREAMS=json.dumps({"vertex": vertex, "g": {**vertex, "location": "global"}})
    )
    parsed = upstreams.upstreams
    assert parsed["vertex"].base_url == (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1/endpoints/openapi"
    )
    assert parsed["g"].base_url.startswith(
        "https://aiplatform.googleapis.com/v1/projects/my-project/locations/global/"
    )
    assert parsed["vertex"].default_credential == "vertex_service_account"
    moved = make_settings(
        AIPROXY_UPSTREAMS=json.dumps({"vertex": {**vertex, "base_url": "http://127.0.0.1:9/v1"}})
    )
    assert moved.upstreams["vertex"].base_url == "http://127.0.0.1:9/v1"  # base_url overrides

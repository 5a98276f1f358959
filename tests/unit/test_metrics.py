"""The request's metrics record (service.ops.metrics): names, dimension sets and bounded values."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from service.config.setting import SettingsError
from service.config.settings import load_settings
from service.core.request_state import RequestState
from service.governance.limits import Admission, Limits
from service.ops import metrics
from service.ops.logformat import JsonFormatter
from tests.support.emf import assert_valid_emf, series

CONTRACT = Path(__file__).resolve().parents[2] / "infra_cdk" / "service_metrics.py"


def contract() -> dict[str, str]:
    """The string constants of infra_cdk/service_metrics.py (read, not imported: no CDK here)."""
    tree = ast.parse(CONTRACT.read_text())
    return {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def finished_request(**used) -> RequestState:
    state = RequestState("req-1", "POST", "/v1/chat/completions", client="web", status=200)
    state.route = "/v1/chat/completions"
    defaults = {"calls": 1, "model": "gpt-4o-mini", "upstream_ms": 80.0, "credential": "openai_api_key"}
    for name, value in {**defaults, **used}.items():
        setattr(state.used, name, value)
    return state


def budgeted(
    day: float | None = None, month: float | None = None, spent_day=0.0, spent_month=0.0
) -> Admission:
    limits = Limits(rpm=60, max_concurrent=5, budget_usd_per_day=day, budget_usd_per_month=month)
    return Admission("web", limits, 0, 0.0, spent_day=spent_day, spent_month=spent_month)


def test_every_name_written_is_the_contracts():
    names = contract()
    assert names["NAMESPACE"] == metrics.NAMESPACE
    state = finished_request(prompt_tokens=10, completion_tokens=5, cost_usd=0.002, first_token_ms=40.0)
    state.status, state.error_kind, state.admission = 502, "timeout", budgeted(day=10)
    state.cache, state.saved_usd = "hit", 0.01  # the answer cache's figures too
    state.end_user = SimpleNamespace(hashed="h", attributes={"aichat_client_type": "ai-tutor"})
    document = metrics.emf_document(
        metrics.RequestMetrics(environment="e.example.org").figures(state, "/r", 502, 9.5)
    )
    written = {name for pair in series(document) for name in (pair[0], *pair[1])}
    assert written == set(names.values()) - {names["NAMESPACE"]}


def test_the_answer_cache_counts_hits_misses_and_what_hits_saved():
    recorder = metrics.RequestMetrics(environment="e.example.org")

    def figures(cache: str | None, saved: float | None = None) -> dict:
        state = finished_request(calls=0)  # a hit made no provider call
        state.cache, state.saved_usd = cache, saved
        return recorder.figures(state, "/v1/chat/completions", 200, 0.4)

    hit = figures("hit", 0.02)
    assert (hit["CacheHits"], hit["CacheMisses"], hit["SavedUSD"]) == (1, 0, 0.02)
    assert "CostUSD" not in hit and "PromptTokens" not in hit
    miss = figures("miss")
    assert (miss["CacheHits"], miss["CacheMisses"]) == (0, 1) and "SavedUSD" not in miss
    assert not {"CacheHits", "CacheMisses", "SavedUSD"} & set(figures(None))  # no cache for the client


def test_the_dimension_sets_are_those_the_dashboard_and_alarms_read():
    state = finished_request(prompt_tokens=10, completion_tokens=5, cost_usd=0.002, first_token_ms=40.0)
    state.status, state.error_kind, state.admission = 502, "timeout", budgeted(day=10)
    document = metrics.emf_document(
        metrics.RequestMetrics(environment="e.example.org").figures(state, "/r", 502, 9.5)
    )
    assert_valid_emf(document)
    env = ("Environment",)
    whole = {"Requests", "Errors", "Latency", "UpstreamLatency", "TimeToFirstToken"}
    usage = {"PromptTokens", "CompletionTokens", "CostUSD"}
    assert series(document) == (
        {(name, env) for name in whole | usage | {"BudgetUsedPercent"}}
        | {("Requests", (*env, "Route", "StatusClass"))}
        | {(name, (*env, by)) for name in usage for by in ("Client", "Model", "Credential")}
        | {("BudgetUsedPercent", (*env, "Client")), ("Errors", (*env, "ErrorKind"))}
        | {("Requests", (*env, "Client"))}
    )
    assert document["Credential"] == "openai_api_key"  # the name of the secret that paid, never its value
    assert (document["CostUSD"], document["BudgetUsedPercent"], document["ErrorKind"]) == (
        0.002,
        0.02,
        "timeout",
    )
    assert (document["Environment"], document["StatusClass"], document["Errors"]) == (
        "e.example.org",
        "5xx",
        1,
    )


def test_an_end_users_request_is_counted_by_client_and_first_attribute_never_by_end_user(caplog):
    state = finished_request(prompt_tokens=10, completion_tokens=5, cost_usd=0.002)
    state.end_user = SimpleNamespace(
        hashed="ab" * 32, attributes={"aichat_client_type": "ai-tutor", "level_id": "7"}
    )
    recorder = metrics.RequestMetrics(environment="e.example.org", emf=True)
    counted = []
    recorder._count = counted.append
    with caplog.at_level(logging.INFO, logger="service.access"):
        recorder.record(state)
    line = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert_valid_emf(line)
    env = ("Environment",)
    assert {("Requests", (*env, "Client", "Attribute")), ("CostUSD", (*env, "Client", "Attribute"))} <= (
        series(line)
    )
    assert (line["Attribute"], line["end_user"]) == ("ai-tutor", "ab" * 32)
    assert line["attributes"] == {"aichat_client_type": "ai-tutor", "level_id": "7"}
    assert "Attributes" not in line  # Prometheus' figure only
    assert counted[0]["Attributes"] == {"aichat_client_type": "ai-tutor", "level_id": "7"}


def test_attribute_values_beyond_the_first_few_hundred_are_other():
    recorder = metrics.RequestMetrics()
    values = []
    for number in range(metrics.MAX_ATTRIBUTE_VALUES + 5):
        state = finished_request()
        state.end_user = SimpleNamespace(hashed="h", attributes={"lesson_id": f"lesson-{number}"})
        values.append(recorder.figures(state, "/r", 200, 1.0)["Attribute"])
    assert values[0] == "lesson-0" and values[-1] == metrics.OTHER


def test_a_request_without_a_provider_call_or_budget_publishes_no_usage():
    state = RequestState("req-2", "GET", "/test", status=200)
    state.route = "/test"
    document = metrics.emf_document(metrics.RequestMetrics().figures(state, "/test", 200, 1.0))
    assert_valid_emf(document)
    assert {name for name, _ in series(document)} == {"Requests", "Errors", "Latency"}
    assert (document["Environment"], document["Client"], document["Errors"]) == ("local", "anonymous", 0)


def test_the_access_line_is_the_emf_document_in_json_only(caplog):
    state = finished_request(prompt_tokens=3, completion_tokens=4)
    for emf, expected in ((True, True), (False, False)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="service.access"):
            metrics.RequestMetrics(emf=emf).record(state)
        [record] = caplog.records
        line = json.loads(JsonFormatter().format(record))
        assert ("_aws" in line) is expected
        assert line["message"] == "POST /v1/chat/completions 200"
        if expected:
            assert_valid_emf(line)
            assert (line["PromptTokens"], line["CompletionTokens"], line["Model"]) == (3, 4, "gpt-4o-mini")


def test_each_access_line_has_the_directives_of_its_own_members_written_as_json_writes_them(caplog):
    # The directives are built once per set of members and their JSON text reused: a line must
    # read exactly as encoding it whole would, and never carry another request's directives.
    requests = [
        finished_request(prompt_tokens=3, completion_tokens=4),
        RequestState("req-2", "GET", "/v1/models", status=404, error_kind="not_found"),
        finished_request(prompt_tokens=3, completion_tokens=4, cost_usd=0.5),
        finished_request(prompt_tokens=5, completion_tokens=6),
    ]
    with caplog.at_level(logging.INFO, logger="service.access"):
        for state in requests:
            metrics.RequestMetrics(emf=True).record(state)
    lines = [JsonFormatter().format(record) for record in caplog.records]
    documents = [json.loads(line) for line in lines]
    for line, document in zip(lines, documents, strict=True):
        assert line == json.dumps(document, separators=(",", ":"), ensure_ascii=False)
        assert_valid_emf(document)
    assert [d["message"].split()[-1] for d in documents] == ["200", "404", "200", "200"]
    assert ("CostUSD", ("Environment", "Client")) in series(documents[2])
    assert ("CostUSD", ("Environment", "Client")) not in series(documents[3])
    assert ("Errors", ("Environment", "ErrorKind")) in series(documents[1])
    assert documents[0]["_aws"]["CloudWatchMetrics"] == documents[3]["_aws"]["CloudWatchMetrics"]
    assert (documents[0]["PromptTokens"], documents[3]["PromptTokens"]) == (3, 5)


@pytest.mark.parametrize("route", ["/", "/metrics"])
def test_the_health_check_and_the_scraper_are_not_counted(caplog, route):
    state = RequestState("req-3", "GET", route, status=200)
    state.route = route
    with caplog.at_level(logging.INFO, logger="service.access"):
        metrics.RequestMetrics(emf=True).record(state)
    [record] = caplog.records
    assert "_aws" not in json.loads(JsonFormatter().format(record))


def test_impossible_figures_from_a_provider_never_break_the_record(caplog):
    state = finished_request(prompt_tokens=-5, completion_tokens=2, cost_usd=-1.0)
    with caplog.at_level(logging.INFO, logger="service.access"):
        metrics.RequestMetrics(emf=True).record(state)
    [record] = caplog.records
    line = json.loads(JsonFormatter().format(record))
    assert_valid_emf(line)
    assert (line["PromptTokens"], line["CompletionTokens"]) == (0, 2)
    assert "CostUSD" not in line


def test_model_names_are_bounded():
    models = metrics.BoundedValues(limit=2, known=["gpt-4o-mini"])
    assert models("x" * 101) == models("gpt 4") == models("gpt-4\n") == models(None) == models(42) == "other"
    assert models("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
    assert models("bedrock/us.amazon.nova-lite-v1:0") == "bedrock/us.amazon.nova-lite-v1:0"
    assert models("third-model") == "other"  # the process has admitted its two new names
    assert models("gpt-4o-mini") == "gpt-4o-mini"  # configured names are always kept
    assert metrics.BoundedValues(limit=5)("typo-model", admit=False) == "other"  # refused by the provider


def test_a_failed_request_does_not_make_its_model_a_series():
    recorder = metrics.RequestMetrics(known_models=["gpt-4o-mini"])
    failed = finished_request(model="gpt-4o-minni", error="http")
    assert recorder.figures(failed, "/v1/chat/completions", 404, 1.0)["Model"] == "other"
    assert recorder.figures(finished_request(model="gpt-4o-minni"), "/r", 200, 1.0)["Model"] == "gpt-4o-minni"
    assert recorder.figures(failed, "/r", 404, 1.0)["Model"] == "gpt-4o-minni"  # admitted once served


def test_the_environment_and_client_are_plain_values():
    recorder = metrics.RequestMetrics(environment=None)
    state = RequestState("req-4", "GET", "/test", client="web", status=200)
    assert recorder.figures(state, "/test", 200, 1.0)["Environment"] == "local"
    assert metrics.RequestMetrics(environment="aiproxy.example.org").environment == "aiproxy.example.org"


def test_unknown_routes_are_unmatched_never_the_path():
    recorder = metrics.RequestMetrics(route_of=lambda method, path: None)
    assert recorder.route(RequestState("req-5", "GET", "/v1/models/abc/def/123")) == "unmatched"
    assert metrics.RequestMetrics().route(RequestState("req-6", "GET", "/x/1")) == "unmatched"


@pytest.mark.parametrize(
    ("admission", "cost", "expected"),
    [
        (budgeted(day=10, spent_day=2.0), 0.5, 25.0),
        (budgeted(day=10, month=100, spent_day=1.0, spent_month=90.0), 0.0, 90.0),  # the higher share
        (budgeted(month=200, spent_month=50.0), 0.0, 25.0),
        (budgeted(), 1.0, None),  # no budget
        (None, 0.0, None),
        (SimpleNamespace(limits=SimpleNamespace(budget_usd_per_day=True), spent_day=1), 0.0, None),
        (SimpleNamespace(limits=SimpleNamespace(budget_usd_per_day=10.0)), 0.0, None),  # no spending known
    ],
)
def test_budget_used_percent_reads_the_admission_defensively(admission, cost, expected):
    assert metrics.budget_used_percent(admission, cost) == expected


def test_the_metrics_key_is_a_secret_setting():
    settings = load_settings(environ={"AIPROXY_METRICS_KEY": "metrics-key-0123456789"}, config_file=None)
    assert settings.metrics_key == "metrics-key-0123456789"
    assert "metrics-key-0123456789" not in repr(settings)
    assert load_settings(environ={}, config_file=None).metrics_key is None
    with pytest.raises(SettingsError, match="AIPROXY_METRICS_KEY is not valid; use at least 16"):
        load_settings(environ={"AIPROXY_METRICS_KEY": "short"}, config_file=None)

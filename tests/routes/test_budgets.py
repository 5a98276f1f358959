"""Budgets and prices through the app (one process: the per-process limiter), against the fake."""

from __future__ import annotations

import json
import logging

from service.governance.key_store import hash_key
from testbed.openai_upstream import Reply
from tests.support.app import make_app

BUDGETED, FREE = (
    "aip_budgeted-client-key-000000000000000000001",
    "aip_free-client-key-0000000000000000000000001",
)
STORE = {
    "school": {"keys": [hash_key(BUDGETED)], "budget_usd_per_month": 10},
    "lab": {"keys": [hash_key(FREE)]},
}


def client_for(fake_openai):
    return make_app(
        OPENAI_BASE_URL=fake_openai.url,
        OPENAI_API_KEY="sk-budgets-provider-key",
        AIPROXY_CLIENT_KEYS=json.dumps(STORE),
        AIPROXY_PRICES=json.dumps({"priced-model": {"input": 1.0, "output": 2.0}}),
    ).test_client()


def chat(client, key: str, model: str):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, buffered=True
    )


def test_a_client_with_a_budget_cannot_use_a_model_without_a_price(fake_openai):
    client = client_for(fake_openai)
    refused = chat(client, BUDGETED, "unpriced-model")
    assert refused.status_code == 400
    error = refused.get_json()["error"]
    assert (error["code"], error["param"]) == ("model_not_priced", "model")
    assert "AIPROXY_PRICES" in error["message"]
    assert fake_openai.requests == []  # refused before anything was sent
    assert chat(client, FREE, "unpriced-model").status_code == 200  # no budget: no price needed


def test_every_usage_record_of_a_priced_model_has_its_cost(fake_openai, caplog):
    client = client_for(fake_openai)
    fake_openai.enqueue(Reply(usage={"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}))
    with caplog.at_level(logging.INFO, logger="service.usage"):
        assert chat(client, BUDGETED, "priced-model").status_code == 200
    [record] = [r for r in caplog.records if r.name == "service.usage"]
    assert record.cost_usd == 0.002  # 1,000 x $1 and 500 x $2 per million
    limits = client.get("/v1/limits", headers={"Authorization": f"Bearer {BUDGETED}"}).get_json()
    assert limits["usage"]["spent_usd_this_month"] == 0.002
    assert limits["remaining"]["budget_usd_this_month"] == 9.998
    assert limits["limits"]["budget_usd_per_month"] == 10 and limits["shared"] is False

"""The FastAPI service over HTTP (fastapi's TestClient) against the bundle's golden recommend
cases, and its answers to bad requests. Needs bench/peers/requirements.txt: `make bench-peers`
runs it in that virtualenv before measuring."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fastapi_service import create_app

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = Path(os.environ.get("LLM4REC_TEST_BUNDLE", ROOT / "models/movielens-100k/1"))


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(str(BUNDLE), intra_threads=1))


def test_golden_over_http(client):
    for case in json.loads((BUNDLE / "golden/index.json").read_text())["recommend"]:
        body = {"history": case["history"], "k": 10, "debias": False}
        if case.get("query"):
            body["query"] = case["query"]
        r = client.post("/v1/recommend", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        assert [x["item_id"] for x in got["items"]] == case["top10"]
        assert got["ips_alpha"] == 0.0


def test_default_and_explicit_debias(client):
    m = json.loads((BUNDLE / "manifest.json").read_text())
    h = json.loads((BUNDLE / "golden/index.json").read_text())["recommend"][0]["history"][-20:]
    assert client.post("/v1/recommend", json={"history": h}).json()["ips_alpha"] == m["ips"]["default_alpha"]
    assert client.post("/v1/recommend", json={"history": h, "debias": {"popularity": 0.3}}).json()["ips_alpha"] == 0.3
    assert len(client.post("/v1/recommend", json={"history": h, "k": 3}).json()["items"]) == 3


def test_bad_requests(client):
    assert client.post("/v1/recommend", json={"history": ["no such item"]}).status_code == 400
    assert client.post("/v1/recommend", json={"history": ["1"], "k": 0}).status_code == 400
    assert client.post("/v1/recommend", json={"history": "1"}).status_code == 422
    assert client.get("/healthz/ready").status_code == 200

"""The Python peer's recommend pipeline (pipeline.py) against the bundle's golden recommend
cases: the same top 10, the same retrieved context, and score differences equal to the golden
scores' within the manifest's tolerance. Runs in `make test` (test-python)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = Path(os.environ.get("LLM4REC_TEST_BUNDLE", ROOT / "models/movielens-100k/1"))


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(BUNDLE, intra_threads=1)


def golden():
    return json.loads((BUNDLE / "golden/index.json").read_text())["recommend"]


@pytest.mark.parametrize("case", golden(), ids=lambda c: f"user{c['user_id']}-{'query' if c.get('query') else 'history'}")
def test_golden_recommend(pipe, case):
    got = pipe.recommend(case["history"], case.get("query"), k=10, exclude_seen=True, alpha=0.0)
    assert [x["item_id"] for x in got["items"]] == case["top10"]
    assert got["context_items"] == case["context"]
    # golden scores are logits (+ steering); log-probabilities differ from them by one constant
    tol = json.loads((BUNDLE / "manifest.json").read_text())["golden"]
    lp = np.array([x["log_prob"] for x in got["items"]])
    want = np.array(case["scores"])
    np.testing.assert_allclose(lp - lp[0], want - want[0], atol=2 * tol["atol"] + tol["rtol"] * np.abs(want).max())


def test_popularity_correction_moves_the_list(pipe):
    case = golden()[0]
    off = pipe.recommend(case["history"], alpha=0.0)
    on = pipe.recommend(case["history"], alpha=1.0)
    assert on["ips_alpha"] == 1.0
    for x in on["items"]:
        i = pipe.row[x["item_id"]]
        assert x["score"] == pytest.approx(x["log_prob"] - pipe.log_p[i], abs=1e-5)
    assert [x["item_id"] for x in on["items"]] != [x["item_id"] for x in off["items"]]
    seen = set(case["history"])
    assert not seen & {x["item_id"] for x in on["items"]}


def test_text_embeddings_match_golden(pipe):
    g = json.loads((BUNDLE / "golden/index.json").read_text())
    pre = g["preprocess"]["text"]
    enc = pipe.tokenizer.encode_batch(pre["strings"])
    assert [e.ids for e in enc] == pre["input_ids"]
    assert [e.attention_mask for e in enc] == pre["attention_mask"]

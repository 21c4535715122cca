"""The shared evaluation fixtures (testdata/protocol at the repository root): the export's own
loading, split, groups, fingerprint, top-k, metrics and item-kNN give the figures that the Go
evaluation (eval/, TestProtocolFixtures) is held to."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from llm4rec_export import data, evaluate, rank

FIXTURES = REPO / "testdata" / "protocol"
SPEC = json.loads((FIXTURES / "protocol.json").read_text(encoding="utf-8"))
TOL = SPEC["tolerance"]


@pytest.mark.parametrize("name", sorted(SPEC["datasets"]))
def test_load_and_split(name):
    want = SPEC["datasets"][name]
    root = FIXTURES / name
    ds = data.load(root)
    sp = data.split(ds)
    groups = data.user_groups(ds)
    assert [it.item_id for it in ds.items] == want["items"]
    assert (ds.n_interactions, ds.dropped) == (want["interactions"], want["dropped"])
    assert data.fingerprint(root) == want["fingerprint"]
    assert ds.users == [u["id"] for u in want["users"]]
    for i, u in enumerate(want["users"]):
        assert [ds.items[r].item_id for r in ds.sequences[i]] == u["items"], u["id"]
        assert ds.timestamps[i].tolist() == u["times"], u["id"]
        assert sp.train[i].tolist() == u["train"], u["id"]
        assert (int(sp.val[i]), int(sp.test[i])) == (u["val"], u["test"]), u["id"]
        assert (groups["gender"][i], groups["age"][i]) == (u["gender"], u["age"]), u["id"]


@pytest.mark.parametrize("case", SPEC["top_k"], ids=lambda c: f"k{c['k']}")
def test_top_k(case):
    top = rank.top_k(np.array(case["scores"], dtype=np.float64), [np.array(e, dtype=np.int64) for e in case["exclude"]],
                     case["k"])
    assert top.tolist() == case["want"]


@pytest.mark.parametrize("i", range(len(SPEC["metrics"])))
def test_metrics(i):
    case = SPEC["metrics"][i]
    got = evaluate.metrics(np.array(case["top"]), np.array(case["targets"]), np.array(case["item_emb"], dtype=np.float32),
                           np.array(case["pop"]), case["groups"])
    want = case["want"]
    assert set(got) == set(want)
    for k, v in want.items():
        if isinstance(v, dict):
            assert set(got[k]) == set(v), k
            for g in v:
                assert got[k][g] == pytest.approx(v[g], abs=TOL), (k, g)
        elif isinstance(v, str) or k == "users":
            assert got[k] == v, k
        else:
            assert got[k] == pytest.approx(v, abs=TOL), k


@pytest.mark.parametrize("i", range(len(SPEC["item_knn"])))
def test_item_knn(i):
    case = SPEC["item_knn"][i]
    got = evaluate.itemknn_scores([np.array(t, dtype=np.int64) for t in case["train"]],
                                  [np.array(h, dtype=np.int64) for h in case["histories"]], case["n"], case["neighbours"],
                                  case["shrink"])
    np.testing.assert_allclose(got, np.array(case["want"]), atol=TOL, rtol=0)

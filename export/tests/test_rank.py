"""Serving-time ranking terms: similar items, diversity re-ranking, and their choice on validation."""
from __future__ import annotations

import numpy as np

from llm4rec_export.rank import Ranking, mmr_top_k, similar_items, top_k


def test_similar_items_are_the_shrunk_cosine_neighbours_best_first():
    # users: {0,1}, {0,1}, {0,2}, {3}
    train = [np.array([0, 1]), np.array([1, 0]), np.array([0, 2]), np.array([3])]
    rows, vals = similar_items(train, 4, neighbours=2, shrink=1.0)
    # c01 = 2, c00 = 3, c11 = 2, c02 = 1, c22 = 1: sim01 = 2/(sqrt(6)+1), sim02 = 1/(sqrt(3)+1)
    assert rows[0].tolist() == [1, 2]
    np.testing.assert_allclose(vals[0], [2 / (np.sqrt(6) + 1), 1 / (np.sqrt(3) + 1)], rtol=1e-6)
    assert rows[3].tolist() == [-1, -1] and vals[3].tolist() == [0, 0]       # no co-occurrence
    assert rows[2].tolist() == [0, -1]


def test_similar_scores_weigh_newer_items_and_normalise():
    rows = np.array([[1, 2], [0, -1], [3, 0], [2, -1]], dtype=np.int32)
    vals = np.array([[0.5, 0.25], [0.5, 0], [1, 0.25], [1, 0]], dtype=np.float32)
    r = Ranking(rows, vals, weight=1.0, decay=0.5, max_history=10)
    s = r.similar_scores([np.array([0, 2]), np.array([], dtype=np.int64)])
    np.testing.assert_allclose(s[0], [0.25, 0.25, 0.125, 1.0])              # as engine/ranking's test
    assert not s[1].any()
    r.max_history = 1
    assert r.similar_scores([np.array([0, 2])])[0, 1] == 0


def test_mmr_without_weight_is_top_k_and_with_weight_spreads():
    emb = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    scores = np.array([[3, 2.9, 2]])
    assert mmr_top_k(scores, [np.array([], dtype=np.int64)], emb, 0.0, 2, 3).tolist() == \
        top_k(scores, [np.array([], dtype=np.int64)], 2).tolist()
    assert mmr_top_k(scores, [np.array([], dtype=np.int64)], emb, 1.0, 3, 3).tolist() == [[0, 2, 1]]
    assert mmr_top_k(scores, [np.array([2])], emb, 1.0, 2, 3).tolist() == [[0, 1]]   # history excluded


def test_choose_ranking_uses_co_occurrence_when_validation_says_so():
    """A catalog of pairs: whoever takes item 2j takes 2j+1 next. A model that knows nothing
    (constant scores) gains a lot from the similar-items term on validation, so it is kept."""
    import torch

    from llm4rec_export import evaluate as ev
    from llm4rec_export.data import TOKEN_OFFSET
    from llm4rec_export.model import ModelConfig, Recommender

    rng = np.random.default_rng(0)
    N, D = 40, 8
    train, val = [], []
    for u in range(120):
        a, b = rng.choice(N // 2, size=2, replace=False) * 2
        train.append(np.array([a, a + 1, b]))
        val.append(b + 1)
    val = np.array(val)
    emb = rng.normal(size=(N, D)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cfg = ModelConfig(dim=D, num_tokens=N + TOKEN_OFFSET, dim_small=8, fusion_layers=1, fusion_heads=2,
                      max_history=8, max_context=0, n_modalities=3, gen_layers=1, gen_heads=2, max_steps=2,
                      dropout=0.0, content=False, steering=False)
    m = Recommender(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    m.items.content[TOKEN_OFFSET:] = torch.from_numpy(emb)
    chosen, rep = ev.choose_ranking([m], train, val, emb, neighbours=5)
    assert chosen.weight > 0
    assert rep["similar_items"]["val_ndcg@10_best"] > rep["similar_items"]["val_ndcg@10_without"] + 0.3
    assert rep["similar_items"]["paired_gain_ci95"][0] > 0

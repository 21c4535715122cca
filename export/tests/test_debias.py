"""Popularity correction at ranking time and group fairness figures (debias.py)."""
from __future__ import annotations

import numpy as np
import pytest

from llm4rec_export import debias
from llm4rec_export.rank import Ranking


def _plain() -> Ranking:
    return Ranking(np.full((1, 1), -1, dtype=np.int32), np.zeros((1, 1), dtype=np.float32))


def test_log_propensity_is_the_engines_smoothed_clipped_share():
    counts = np.array([8.0, 1.0, 0.0, 1.0])
    lp = debias.log_propensity(counts)
    np.testing.assert_allclose(np.exp(lp), (counts + 1) / (10 + 4))
    assert np.exp(debias.log_propensity(np.array([0.0] * 10 + [1e6]))).min() == pytest.approx(debias.CLIP_MIN)


def test_head_is_the_most_popular_items_holding_the_first_fifth_of_interactions():
    head = debias.head_items(np.array([1.0, 10.0, 5.0, 3.0, 1.0]))
    assert head.tolist() == [False, True, False, False, False]           # 10 of 20 crosses 4 at once
    head = debias.head_items(np.array([2.0, 2.0, 2.0, 2.0, 2.0]))
    assert head.tolist() == [True, False, False, False, False]           # 2 of 10 reaches 2: ties by row


def test_gini():
    assert debias.gini(np.ones(7)) == pytest.approx(0.0)
    assert debias.gini(np.array([0, 0, 0, 5.0])) == pytest.approx(0.75)
    assert debias.gini(np.zeros(3)) == 0.0


def test_sweep_moves_lists_to_the_tail_as_alpha_grows_and_alpha_zero_is_plain_top_k():
    rng = np.random.default_rng(1)
    U, N = 200, 60
    counts = np.sort(rng.pareto(1.2, size=N) * 10)[::-1].copy()
    # scores that follow popularity plus noise: the uncorrected lists are popular
    S = (np.log(counts + 1)[None, :] + rng.normal(scale=0.5, size=(U, N))).astype(np.float32)
    hist = [rng.choice(N, size=3, replace=False) for _ in range(U)]
    targets = rng.integers(0, N, size=U)
    pts = debias.sweep([S], hist, targets, _plain(), np.eye(N, dtype=np.float32), counts, U,
                       alphas=(0.0, 0.5, 1.0, 2.0))
    arp = [p["arp"] for p in pts]
    tail = [p["long_tail_share"] for p in pts]
    assert arp == sorted(arp, reverse=True) and arp[-1] < arp[0]
    assert tail == sorted(tail) and tail[-1] > tail[0]
    assert pts[-1]["exposure_gini"] < pts[0]["exposure_gini"]
    from llm4rec_export.evaluate import ndcg_per_user
    from llm4rec_export.rank import top_k
    assert pts[0]["ndcg@10"] == pytest.approx(ndcg_per_user(top_k(S, hist, 10), targets).mean())


def test_choose_alpha_takes_the_largest_within_the_cost():
    pts = [{"alpha": 0.0, "ndcg@10": 0.100}, {"alpha": 0.1, "ndcg@10": 0.0995},
           {"alpha": 0.2, "ndcg@10": 0.0975}, {"alpha": 0.3, "ndcg@10": 0.0985}, {"alpha": 0.5, "ndcg@10": 0.090}]
    assert debias.choose_alpha(pts) == 0.3
    assert debias.choose_alpha(pts, max_cost=0.0) == 0.0


def test_group_report_intervals_cover_a_real_gap_and_seeds_spread():
    rng = np.random.default_rng(2)
    U = 2000
    g = ["F" if u % 3 == 0 else "M" for u in range(U)]
    g[5] = None                                                          # no group: left out
    base = np.where(np.array([x == "F" for x in g]), 0.15, 0.10)
    seeds = [np.clip(base + rng.normal(scale=0.05, size=U), 0, 1) for _ in range(3)]
    seeds[0][7] = np.nan                                                 # not evaluated
    arp = [np.full(U, 0.2) for _ in range(3)]
    rep = debias.group_report(seeds, arp, g, seed=0)
    gap = rep["ndcg@10_gap"]
    assert gap["pair"] == "F-M" and gap["ci95"][0] < gap["gap"] < gap["ci95"][1]
    assert gap["ci95"][0] > 0.03 and gap["ci95"][1] < 0.07
    assert len(gap["by_seed"]) == 3 and gap["seed_sd"] > 0
    assert rep["arp_gap"]["gap"] == pytest.approx(0.0)
    assert rep["by_group"]["M"]["users"] + rep["by_group"]["F"]["users"] == U - 1
    assert debias.group_report(seeds, arp, ["F"] * U) == {}


def _points(per_alpha: dict[float, np.ndarray], arp: dict[float, np.ndarray] | None = None) -> list[dict]:
    return [{"alpha": a, "ndcg@10": float(v.mean()), "_per_user": v,
             "_arp_per_user": (arp or {}).get(a, np.full(len(v), 0.2 - a / 10))} for a, v in per_alpha.items()]


def test_choose_group_alphas_gives_each_group_what_costs_it_at_most_the_limit():
    # F loses nothing up to alpha 0.3 and 20% beyond; M loses 1% at 0.1 and 5% at 0.3
    g = ["F"] * 50 + ["M"] * 50 + ["X"] * 10 + [None] * 5
    f = {0.0: 0.10, 0.1: 0.10, 0.3: 0.10, 0.5: 0.08}
    m = {0.0: 0.20, 0.1: 0.198, 0.3: 0.19, 0.5: 0.15}
    per = {a: np.array([f[a]] * 50 + [m[a]] * 50 + [0.3] * 10 + [0.1] * 5) for a in f}
    ok = np.ones(len(g), dtype=bool)
    ok[0] = False                                           # no validation target: not a row
    pts = _points({a: v[ok] for a, v in per.items()})
    assert debias.choose_group_alphas(pts, g, ok) == {"F": 0.3, "M": 0.1}   # X: too few users
    assert debias.choose_group_alphas(pts, g, ok, max_cost=0.0) == {"F": 0.3, "M": 0.0}
    assert debias.choose_group_alphas(pts, g, ok, min_users=5) == {"F": 0.3, "M": 0.1, "X": 0.5}


def test_group_calibration_report_measures_the_gap_it_narrows_with_intervals():
    rng = np.random.default_rng(3)
    nf, nm = 600, 900
    g = ["F"] * nf + ["M"] * nm
    noise = rng.normal(scale=0.02, size=nf + nm)
    # without correction F trails M by 0.04; alpha 0.5 lifts F by 0.03 and costs M 0.01
    per = {0.0: np.r_[np.full(nf, 0.10), np.full(nm, 0.14)] + noise,
           0.2: np.r_[np.full(nf, 0.11), np.full(nm, 0.14)] + noise,
           0.5: np.r_[np.full(nf, 0.13), np.full(nm, 0.13)] + noise}
    pts = _points(per)
    ok = np.ones(nf + nm, dtype=bool)
    rep = debias.group_calibration_report(pts, g, ok, {"F": 0.5, "M": 0.0}, 0.2, seed=0)
    assert rep["pair"] == "F-M"
    c = rep["conditions"]
    assert c["alpha 0"]["ndcg@10_gap"] == pytest.approx(-0.04, abs=0.005)
    assert c["default"]["ndcg@10_gap"] == pytest.approx(-0.03, abs=0.005)
    cal = c["group calibrated"]
    assert cal["ndcg@10_gap"] == pytest.approx(-0.01, abs=0.005)
    assert cal["gap_narrowed"] == pytest.approx(0.03, abs=0.005)
    assert 0 < cal["gap_narrowed_ci95"][0] < cal["gap_narrowed"] < cal["gap_narrowed_ci95"][1]
    assert cal["gap_narrowed_relative"] == pytest.approx(0.75, abs=0.1)
    assert cal["ndcg@10_change"] > 0 and cal["arp"] < c["alpha 0"]["arp"]
    # a group without calibration takes the default; a strength the sweep lacks gives nothing
    assert debias.group_calibration_report(pts, g, ok, {"F": 0.5}, 0.2)["conditions"]["group calibrated"]["ndcg@10_gap"] \
        == pytest.approx((0.13 - 0.14), abs=0.005)
    assert debias.group_calibration_report(pts, g, ok, {"F": 0.7}, 0.2) == {}

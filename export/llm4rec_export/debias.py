"""Popularity debiasing at ranking time, chosen on validation, and fairness across user groups
measured with intervals.

The engine ranks by score_i - alpha * log(p_i), where p_i is item i's smoothed, clipped share
of the interactions (engine/popularity: (count_i + smoothing) / (total + smoothing * n), at
least clip_min) and the score is the served one (log-probability plus the bundle's ranking
terms; the diversity re-ranking then picks from the reweighted scores). alpha 0 is no
correction. The bundle's default alpha is the largest of ALPHAS whose validation NDCG@10
(history = training items, target = the validation item, mean over the model's seeds) is at
least (1 - MAX_COST) times that of alpha 0; test users never take part in the choice.
"""
from __future__ import annotations

import numpy as np

from .evaluate import K, ndcg_per_user

ALPHAS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)
MAX_COST = 0.02
SMOOTHING = 1.0
CLIP_MIN = 1e-4
HEAD_SHARE = 0.2


def log_propensity(counts: np.ndarray, smoothing: float = SMOOTHING, clip_min: float = CLIP_MIN) -> np.ndarray:
    """log p_i as the engine computes it from the counts it is seeded with."""
    counts = np.asarray(counts, dtype=np.float64)
    p = (counts + smoothing) / (counts.sum() + smoothing * len(counts))
    return np.log(np.maximum(p, clip_min))


def head_items(counts: np.ndarray, share: float = HEAD_SHARE) -> np.ndarray:
    """The short head: the most popular items (ties by the lower row) that together hold the
    first `share` of the interactions, the item that crosses the line included. Every other
    item is the long tail."""
    counts = np.asarray(counts, dtype=np.float64)
    order = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
    head = np.zeros(len(counts), dtype=bool)
    total, acc = counts.sum(), 0.0
    for i in order:
        if total <= 0 or acc >= share * total:
            break
        head[i] = True
        acc += counts[i]
    return head


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: equal, towards 1: concentrated)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n, s = len(x), x.sum()
    if n == 0 or s <= 0:
        return 0.0
    return float((2.0 * np.arange(1, n + 1) - n - 1).dot(x) / (n * s))


def exposure(top: np.ndarray, counts: np.ndarray, n_users: int, head: np.ndarray) -> dict:
    """Exposure figures of top-k lists [U, k]: average recommendation popularity (mean share of
    users who interacted with a listed item, as `arp` in evaluate.metrics), catalog coverage,
    the share of listed items in the long tail and the Gini coefficient of how often each
    catalog item is listed."""
    n = len(counts)
    listed = np.bincount(top.ravel(), minlength=n)
    return {"arp": float((counts / max(n_users, 1))[top].mean()),
            "coverage@10": float((listed > 0).sum() / n),
            "long_tail_share": float((~head[top]).mean()),
            "exposure_gini": gini(listed)}


def sweep(scores: list[np.ndarray], histories: list[np.ndarray], targets: np.ndarray, ranking, item_emb: np.ndarray,
          counts: np.ndarray, n_users: int, alphas=ALPHAS) -> list[dict]:
    """The frontier over alphas: for each, NDCG@10 (mean over the seeds' score matrices) and the
    exposure figures (mean over seeds), lists as served (ranking.top_k, history excluded).
    Also returns each alpha's per-user NDCG and recommendation popularity (mean over seeds;
    users with a target, in order) under the keys `_per_user` and `_arp_per_user`."""
    lp = log_propensity(counts)
    head = head_items(counts)
    ok = targets >= 0
    out = []
    share = np.asarray(counts, dtype=np.float64) / max(n_users, 1)
    for a in alphas:
        nd, ex, arp = [], [], []
        for S in scores:
            top = ranking.top_k(S - a * lp[None, :].astype(S.dtype), histories, item_emb, K)
            nd.append(ndcg_per_user(top, targets))
            ex.append(exposure(top[ok], counts, n_users, head))
            arp.append(share[top[ok]].mean(1))
        pu = np.mean(nd, axis=0)
        point = {"alpha": float(a), "ndcg@10": float(pu.mean())}
        for key in ex[0]:
            point[key] = float(np.mean([e[key] for e in ex]))
        point["_per_user"] = pu
        point["_arp_per_user"] = np.mean(arp, axis=0)
        out.append(point)
    return out


def choose_alpha(val_points: list[dict], max_cost: float = MAX_COST) -> float:
    """The largest alpha whose validation NDCG@10 is at least (1 - max_cost) times alpha 0's."""
    base = next(p for p in val_points if p["alpha"] == 0.0)["ndcg@10"]
    ok = [p["alpha"] for p in val_points if p["ndcg@10"] >= (1.0 - max_cost) * base]
    return max(ok) if ok else 0.0


def public(points: list[dict]) -> list[dict]:
    return [{k: v for k, v in p.items() if not k.startswith("_")} for p in points]


def group_report(per_seed_ndcg: list[np.ndarray], per_seed_arp: list[np.ndarray], groups: list, seed: int = 0,
                 n_boot: int = 2000) -> dict:
    """NDCG@10 and average recommendation popularity by group with bootstrap 95% intervals
    over users (users resampled within each group; the seeds' per-user figures averaged
    first), the gap between the two largest groups (first minus second by name) with its
    interval, and each seed's gap (the spread over seeds). per_seed_*: [U] per user (NaN:
    not evaluated); groups: [U] group name or None."""
    g = np.array([x if x else "" for x in groups], dtype=object)
    nd = np.nanmean(np.stack(per_seed_ndcg), axis=0)
    arp = np.nanmean(np.stack(per_seed_arp), axis=0)
    ok = ~np.isnan(nd)
    names = sorted(set(g[ok]) - {""})
    if len(names) < 2:
        return {}
    rng = np.random.default_rng(seed)
    idx = {n: np.nonzero(ok & (g == n))[0] for n in names}
    boot = {n: rng.integers(0, len(idx[n]), size=(n_boot, len(idx[n]))) for n in names}

    def ci(v: np.ndarray, n: str) -> list[float]:
        means = v[idx[n]][boot[n]].mean(1)
        return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]

    out = {"by_group": {n: {"users": int(len(idx[n])), "ndcg@10": float(nd[idx[n]].mean()), "ndcg@10_ci95": ci(nd, n),
                            "arp": float(arp[idx[n]].mean()), "arp_ci95": ci(arp, n)} for n in names}}
    big = sorted(names, key=lambda n: (-len(idx[n]), n))[:2]
    a, b = sorted(big)
    for key, v in (("ndcg@10", nd), ("arp", arp)):
        gaps = v[idx[a]][boot[a]].mean(1) - v[idx[b]][boot[b]].mean(1)
        seeds = [float(np.nanmean(s[idx[a]]) - np.nanmean(s[idx[b]]))
                 for s in (per_seed_ndcg if key == "ndcg@10" else per_seed_arp)]
        out[f"{key}_gap"] = {"pair": f"{a}-{b}", "gap": float(v[idx[a]].mean() - v[idx[b]].mean()),
                             "ci95": [float(np.percentile(gaps, 2.5)), float(np.percentile(gaps, 97.5))],
                             "by_seed": seeds, "seed_sd": float(np.std(seeds, ddof=1)) if len(seeds) > 1 else 0.0}
    return out


MIN_GROUP_USERS = 30


def choose_group_alphas(val_pts: list[dict], groups: list, ok: np.ndarray, max_cost: float = MAX_COST,
                        min_users: int = MIN_GROUP_USERS) -> dict[str, float]:
    """Group calibration of the popularity correction: for each group of one attribute (gender,
    age band), the largest alpha whose mean validation NDCG@10 over the group's users is at
    least (1 - max_cost) times the group's own at alpha 0. Every group then gets as much
    correction as costs it at most max_cost of its accuracy, where one strength for all lets
    the groups that gain little from it pay for the others. groups: [U] names or None (all
    users); ok: [U] users with a validation target (the rows of the points' `_per_user`).
    Groups with fewer than min_users such users are left out (they get the default)."""
    g = np.array([x if x else "" for x in groups], dtype=object)[ok]
    base = next(p for p in val_pts if p["alpha"] == 0.0)["_per_user"]
    out = {}
    for name in sorted(set(g) - {""}):
        m = g == name
        if m.sum() < min_users:
            continue
        b = base[m].mean()
        fits = [p["alpha"] for p in val_pts if p["_per_user"][m].mean() >= (1.0 - max_cost) * b]
        out[str(name)] = float(max(fits)) if fits else 0.0
    return out


def group_calibration_report(test_pts: list[dict], groups: list, ok: np.ndarray, group_alpha: dict[str, float],
                             default_alpha: float, seed: int = 0, n_boot: int = 2000) -> dict:
    """Test figures of group calibration (each user corrected with their group's alpha, users of
    uncalibrated groups with the default) against no correction and against the default, on the
    same users and seeds: NDCG@10 and recommendation popularity overall, the NDCG@10 gap between
    the two largest groups (first minus second by name) under each, and how much the calibration
    narrows the gap's size against no correction, with a paired bootstrap 95% interval over
    users (users resampled within each group, the same draws for both)."""
    g = np.array([x if x else "" for x in groups], dtype=object)[ok]
    by_alpha = {p["alpha"]: p for p in test_pts}
    names = sorted(set(g) - {""})
    if len(names) < 2 or 0.0 not in by_alpha or default_alpha not in by_alpha:
        return {}
    user_alpha = np.array([group_alpha.get(x, default_alpha) if x else default_alpha for x in g])
    if any(a not in by_alpha for a in set(user_alpha)):
        return {}

    def at(key: str, alphas: np.ndarray) -> np.ndarray:
        v = np.empty(len(alphas))
        for a in set(alphas):
            m = alphas == a
            v[m] = by_alpha[a][key][m]
        return v

    conds = {"alpha 0": np.zeros(len(g)), "default": np.full(len(g), default_alpha), "group calibrated": user_alpha}
    nd = {c: at("_per_user", a) for c, a in conds.items()}
    arp = {c: at("_arp_per_user", a) for c, a in conds.items()}
    idx = {n: np.nonzero(g == n)[0] for n in names}
    first, second = sorted(sorted(names, key=lambda n: (-len(idx[n]), n))[:2])
    rng = np.random.default_rng(seed)
    bf = idx[first][rng.integers(0, len(idx[first]), size=(n_boot, len(idx[first])))]
    bs = idx[second][rng.integers(0, len(idx[second]), size=(n_boot, len(idx[second])))]

    def gap(v: np.ndarray) -> tuple[float, np.ndarray]:
        return float(v[idx[first]].mean() - v[idx[second]].mean()), v[bf].mean(1) - v[bs].mean(1)

    def ci(x: np.ndarray) -> list[float]:
        return [float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5))]

    out = {"pair": f"{first}-{second}", "alpha": dict(group_alpha), "conditions": {}}
    base_nd = nd["alpha 0"].mean()
    g0, b0 = gap(nd["alpha 0"])
    for c in conds:
        gc, bc = gap(nd[c])
        row = {"ndcg@10": float(nd[c].mean()), "ndcg@10_change": float(nd[c].mean() / base_nd - 1) if base_nd else 0.0,
               "arp": float(arp[c].mean()), "ndcg@10_gap": gc, "ndcg@10_gap_ci95": ci(bc)}
        if c != "alpha 0":
            row["gap_narrowed"] = abs(g0) - abs(gc)
            row["gap_narrowed_ci95"] = ci(np.abs(b0) - np.abs(bc))
            row["gap_narrowed_relative"] = float(1 - abs(gc) / abs(g0)) if g0 else float("nan")
        out["conditions"][c] = row
    return out

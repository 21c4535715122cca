"""Full-ranking leave-one-out evaluation and baselines.

Metrics over users with a held-out item (see docs of each function):
  hr@10, ndcg@10        hit rate / NDCG of the single held-out item in the top 10 (full catalog
                        minus every item of the user's history; never sampled negatives)
  coverage@10           distinct items in all top-10 lists / catalog size
  ild@10                intra-list diversity: 1 - mean pairwise cosine of the item content
                        embeddings normalise(text + image_mix * image) (before any fine-tuning,
                        the same for every model) over the 45 pairs of a list, averaged
  arp                   average recommendation popularity: mean over lists of the mean training
                        popularity of their items, popularity = training interactions / users
  ndcg@10 by group      per gender value and per age band (<25, 25-34, 35-44, 45+), with the
                        gender gap (first minus second gender in sorted order, e.g. F - M) and
                        the age gap (max - min band)
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .data import TOKEN_OFFSET
from .model import ExportGenerator, Recommender
from .rank import Ranking, first_step_scores, fusion_inputs, similar_items, top_k

K = 10


def model_scores(model: Recommender, histories: list[np.ndarray], batch: int = 256,
                 mod_emb: np.ndarray | None = None, mod_mask: np.ndarray | None = None,
                 return_states: bool = False, served: bool = True):
    """Scores [U,N] as served for users with the given full histories: the generator's first
    step plus the request's steering term when modalities are given, plus the similar-items
    term of model.ranking when set and `served`. The ID-only model gets no context and no
    modalities (it was trained without them)."""
    cfg = model.cfg
    model.eval()
    item_emb = model.served_item_emb(TOKEN_OFFSET)
    E = torch.from_numpy(item_emb)
    with torch.no_grad():
        gen = ExportGenerator(model.generator, TOKEN_OFFSET)
    out, states = [], []
    R = cfg.max_context if cfg.content else 0
    with torch.inference_mode():
        for s in range(0, len(histories), batch):
            hs = histories[s:s + batch]
            me = mod_emb[s:s + batch] if mod_emb is not None and cfg.content else None
            mm = mod_mask[s:s + batch] if mod_mask is not None and cfg.content else None
            inp, _, _ = fusion_inputs(item_emb, hs, cfg.max_history, cfg.n_modalities, R, me, mm)
            t = {k: torch.from_numpy(v) for k, v in inp.items()}
            us, _, steer = model.fusion(**t)
            out.append(first_step_scores(gen, us, cfg, steer if me is not None else None, E).numpy())
            states.append(us.numpy())
    scores = np.concatenate(out)
    if served and model.ranking is not None:
        scores = model.ranking.add_similar(scores, histories)
    return (scores, np.concatenate(states)) if return_states else scores


def served_top_k(model, scores: np.ndarray, histories: list[np.ndarray], k: int = K) -> np.ndarray:
    """Top k as served: model.ranking's diversity re-ranking when set, else plain top k."""
    if getattr(model, "ranking", None) is not None:
        return model.ranking.top_k(scores, histories, model.served_item_emb(TOKEN_OFFSET), k)
    return top_k(scores, histories, k)


def metrics(top: np.ndarray, targets: np.ndarray, item_emb: np.ndarray, pop: np.ndarray,
            groups: dict[str, list] | None = None) -> dict:
    """top [U,K] rows, targets [U] (-1 = skip)."""
    ok = targets >= 0
    top, targets = top[ok], targets[ok]
    hit = top == targets[:, None]
    rank = np.where(hit.any(1), hit.argmax(1), -1)
    ndcg = np.where(rank >= 0, 1.0 / np.log2(np.maximum(rank, 0) + 2.0), 0.0)
    e = item_emb[top]                                                 # [U,K,D]
    e = e / np.maximum(np.linalg.norm(e, axis=2, keepdims=True), 1e-12)
    sim = np.einsum("ukd,ujd->ukj", e, e)
    k = top.shape[1]
    pair = (sim.sum((1, 2)) - np.trace(sim, axis1=1, axis2=2)) / (k * (k - 1))
    res = {"users": int(ok.sum()), "hr@10": float(hit.any(1).mean()), "ndcg@10": float(ndcg.mean()),
           "coverage@10": float(len(np.unique(top)) / len(item_emb)), "ild@10": float((1 - pair).mean()),
           "arp": float(pop[top].mean())}
    if groups:
        for key, vals in groups.items():
            v = np.array([x if x is not None else "" for x in vals], dtype=object)[ok]
            by = {}
            for gname in sorted(set(v) - {""}):
                sel = v == gname
                by[str(gname)] = float(ndcg[sel].mean())
            if len(by) >= 2:
                res[f"ndcg@10_by_{key}"] = by
                if key == "gender":
                    a, b = sorted(by)[:2]
                    res["gender_gap"] = by[a] - by[b]
                    res["gender_gap_pair"] = f"{a}-{b}"
                else:
                    res[f"{key}_gap"] = max(by.values()) - min(by.values())
    return res


def popularity(train: list[np.ndarray], n_items: int) -> np.ndarray:
    c = np.zeros(n_items)
    for s in train:
        np.add.at(c, s, 1)
    return c


def pop_scores(counts: np.ndarray, n_users: int) -> np.ndarray:
    return np.tile(counts[None].astype(np.float32), (n_users, 1))


def itemknn_scores(train: list[np.ndarray], histories: list[np.ndarray], n_items: int, neighbours: int = 100,
                   shrink: float = 10.0) -> np.ndarray:
    """Item-kNN: cosine similarity of the items' training user vectors (shrunk), top-`neighbours`
    per item; a user's score for i = sum of i's similarity to the items of the history."""
    U = len(train)
    X = np.zeros((U, n_items), dtype=np.float32)
    for u, s in enumerate(train):
        X[u, s] = 1.0
    co = X.T @ X
    n = np.sqrt(np.diag(co))
    sim = co / (np.outer(n, n) + shrink + 1e-9)
    np.fill_diagonal(sim, 0.0)
    if neighbours < n_items:
        thr = -np.partition(-sim, neighbours - 1, axis=1)[:, neighbours - 1:neighbours]
        sim = np.where(sim >= thr, sim, 0.0)
    H = np.zeros((len(histories), n_items), dtype=np.float32)
    for u, h in enumerate(histories):
        H[u, h] = 1.0
    return H @ sim.T


def evaluate_scores(scores: np.ndarray, histories: list[np.ndarray], targets: np.ndarray, item_emb: np.ndarray,
                    pop: np.ndarray, groups=None, model=None) -> tuple[dict, np.ndarray]:
    """Metrics of the top 10 of scores (as model serves them when given: see served_top_k)."""
    top = served_top_k(model, scores, histories, K) if model is not None else top_k(scores, histories, K)
    return metrics(top, targets, item_emb, pop, groups), top


def fast_ndcg(scores: np.ndarray, histories: list[np.ndarray], targets: np.ndarray) -> float:
    """NDCG@10 only (validation during training)."""
    s = scores.astype(np.float64).copy()
    tot, n = 0.0, 0
    for u in range(len(s)):
        if targets[u] < 0:
            continue
        s[u, histories[u]] = -np.inf
        t = s[u, targets[u]]
        rank = int((s[u] > t).sum() + ((s[u] == t) & (np.arange(s.shape[1]) < targets[u])).sum())
        tot += 1.0 / math.log2(rank + 2) if rank < K else 0.0
        n += 1
    return tot / max(n, 1)


def ndcg_per_user(top: np.ndarray, targets: np.ndarray) -> np.ndarray:
    ok = targets >= 0
    hit = top[ok] == targets[ok][:, None]
    rank = np.where(hit.any(1), hit.argmax(1), -1)
    return np.where(rank >= 0, 1.0 / np.log2(np.maximum(rank, 0) + 2.0), 0.0)


def mean_over_seeds(per_seed: list[dict]) -> dict:
    """Mean of each numeric metric over seeds (per-group dictionaries key by key), its standard
    deviation as `<metric>_std`, and every seed's own figures under `seeds`."""
    out: dict = {}
    first = per_seed[0]
    for k, v in first.items():
        vals = [r[k] for r in per_seed if k in r]
        if isinstance(v, bool) or k == "seed":
            continue
        if isinstance(v, int) and all(x == v for x in vals):
            out[k] = v                              # e.g. users: the same on every seed
        elif isinstance(v, (int, float)):
            out[k] = float(np.mean(vals))
            if len(vals) > 1 and k in ("ndcg@10", "hr@10", "ild@10", "coverage@10", "arp", "val_ndcg@10"):
                out[f"{k}_std"] = float(np.std(vals, ddof=1))
        elif isinstance(v, dict):
            out[k] = {g: float(np.mean([r[k][g] for r in per_seed if g in r.get(k, {})])) for g in v}
        else:
            out[k] = v
    out["seeds"] = [{m: r[m] for m in ("seed", "ndcg@10", "hr@10", "val_ndcg@10", "best_epoch", "epochs") if m in r}
                    for r in per_seed]
    return out


def paired_diff_ci(a: np.ndarray, b: np.ndarray, seed: int = 0, n: int = 2000) -> dict:
    """Mean of per-user NDCG@10 a minus b (each already averaged over seeds), relative to b, and
    the paired bootstrap 95% interval over users."""
    d = a - b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n, len(d)))
    boots = d[idx].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"diff": float(d.mean()), "relative": float(d.mean() / b.mean()) if b.mean() else float("nan"),
            "ci95": [float(lo), float(hi)], "users": int(len(d))}


SIMILAR_DECAYS = (1.0, 0.8, 0.6)
SIMILAR_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
DIVERSITY_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)


def choose_ranking(models: list, train: list[np.ndarray], val: np.ndarray, item_emb: np.ndarray,
                   neighbours: int = 50, candidates: int = 50, seed: int = 0) -> tuple[Ranking, dict]:
    """The serving-time ranking terms, chosen on validation (history = training items, target =
    the validation item) with the trained model seeds' scores, never on test:
    - similar items: the (decay, weight) of SIMILAR_DECAYS x SIMILAR_WEIGHTS with the best
      validation NDCG@10 (mean over seeds); kept only when the paired bootstrap 95% interval of
      its per-user gain over weight 0 lies above 0, else weight 0;
    - diversity: the largest of DIVERSITY_WEIGHTS whose validation NDCG@10 is at least that of
      no re-ranking (diversity that costs no validation accuracy).
    Neighbours come from the training interactions only."""
    rows, vals = similar_items(train, item_emb.shape[0], neighbours)
    L = models[0].cfg.max_history
    base = [model_scores(m, train, served=False) for m in models]
    ok = val >= 0

    def per_user(r: Ranking) -> np.ndarray:
        nd = []
        for S in base:
            sc = r.add_similar(S, train)
            nd.append(ndcg_per_user(r.top_k(sc, train, item_emb, K), val))
        return np.mean(nd, axis=0)

    grid = {}
    zero = per_user(Ranking(rows, vals, 0.0, 1.0, L))
    best = (float(zero.mean()), 0.0, 1.0)
    best_pu = zero
    for d in SIMILAR_DECAYS:
        for w in SIMILAR_WEIGHTS[1:]:
            pu = per_user(Ranking(rows, vals, w, d, L))
            grid[f"decay {d} weight {w}"] = float(pu.mean())
            if pu.mean() > best[0]:
                best, best_pu = (float(pu.mean()), w, d), pu
    ci = paired_diff_ci(best_pu, zero, seed)
    kept = ci["ci95"][0] > 0
    weight, decay = (best[1], best[2]) if kept else (0.0, 1.0)
    chosen = Ranking(rows, vals, weight, decay, L, 0.0, candidates)
    ref = float((best_pu if kept else zero).mean())
    div = {"0.0": ref}
    diversity = 0.0
    for lam in DIVERSITY_WEIGHTS[1:]:
        v = float(per_user(Ranking(rows, vals, weight, decay, L, lam, candidates)).mean())
        div[str(lam)] = v
        if v >= ref:
            diversity = lam
    chosen.diversity = diversity
    report = {"similar_items": {"neighbours": neighbours, "weight": weight, "decay": decay,
                                "val_ndcg@10_without": float(zero.mean()),
                                "val_ndcg@10_best": best[0], "best": {"weight": best[1], "decay": best[2]},
                                "paired_gain_ci95": ci["ci95"], "grid_val_ndcg@10": grid},
              "diversity": {"weight": diversity, "candidates": candidates, "grid_val_ndcg@10": div},
              "validation_users": int(ok.sum()), "seeds": len(models)}
    return chosen, report

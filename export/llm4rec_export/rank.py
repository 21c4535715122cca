"""Serving-side computations shared by training, evaluation and the golden recommend cases.

Retrieval rule for the fusion `context` (the Go engine reproduces it):
  r = normalise(sum of present modality embeddings) when any modality is present, else
      normalise(sum of the history item embeddings given to fusion), else no context;
  context = the max_context catalog items with the highest dot product r . e_i, excluding the
            items of the history given to fusion; ties by lower row; mask 1 for each.
Recommendation ("as served"): fusion on the last max_history items of the user's history
(oldest first), generator first step (tokens [[bos]], P = 0), logits of item columns plus the
fusion's steering output . each item's embedding, plus the similar-items term (below), every
item of the user's whole history excluded, top k by score (ties by lower row), or the
diversity re-ranking (below) of the best `candidates` when the bundle sets a diversity weight.

Similar items (the catalog's co-occurrence, retrieval over "what else did users take"): each
item h lists its `neighbours` most similar items j by the shrunk cosine of their training
interaction vectors, c_hj / (sqrt(c_hh c_jj) + shrink) (ties by lower row). For a history
whose last max_history items are h_1..h_n (oldest first), item j's evidence is
  s_j = sum over positions t of decay^(n - t) * sim(h_t, j)   (sum over h_t's neighbours only)
divided by max_j s_j (0 when nothing is a neighbour); the logits get weight * s_j.
Diversity (maximal marginal relevance): among the `candidates` best items by score, picks k
greedily, each time the item with the highest score - diversity * (its largest dot product with
an item already picked; 0 for the first), ties by rank among the candidates.
"""
from __future__ import annotations

import numpy as np
import torch

from dataclasses import dataclass

from .data import BOS_TOKEN, TOKEN_OFFSET


@dataclass
class Ranking:
    """The serving-time ranking terms (chosen on validation by the bundle; see the module doc)."""
    neighbour_rows: np.ndarray          # [N,K] int32 item rows, -1 padding
    neighbour_weights: np.ndarray       # [N,K] float32 similarities, 0 padding
    weight: float = 0.0                 # of the similar-items term
    decay: float = 1.0                  # per position back from the newest history item
    max_history: int = 100              # history items that count (as for fusion)
    diversity: float = 0.0              # MMR weight; 0 = plain top k
    candidates: int = 50

    def similar_scores(self, histories: list[np.ndarray]) -> np.ndarray:
        """[B,N] normalised similar-items evidence of each history."""
        N, K = self.neighbour_rows.shape
        out = np.zeros((len(histories), N), dtype=np.float64)
        for b, h in enumerate(histories):
            h = np.asarray(h[-self.max_history:], dtype=np.int64)
            if len(h) == 0:
                continue
            w = self.decay ** np.arange(len(h) - 1, -1, -1, dtype=np.float64)     # newest gets 1
            rows = self.neighbour_rows[h]                                          # [n,K]
            vals = self.neighbour_weights[h].astype(np.float64) * w[:, None]
            ok = rows >= 0
            np.add.at(out[b], rows[ok], vals[ok])
            m = out[b].max()
            if m > 0:
                out[b] /= m
        return out

    def add_similar(self, scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        if self.weight == 0:
            return scores
        return scores + self.weight * self.similar_scores(histories)

    def top_k(self, scores: np.ndarray, exclude: list[np.ndarray], item_emb: np.ndarray, k: int) -> np.ndarray:
        if self.diversity == 0:
            return top_k(scores, exclude, k)
        return mmr_top_k(scores, exclude, item_emb, self.diversity, k, self.candidates)


def similar_items(train: list[np.ndarray], n_items: int, neighbours: int = 50,
                  shrink: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Each item's `neighbours` most similar items (see the module doc): rows [N,K] (-1 pad) and
    similarities [N,K] (0 pad), best first, ties by lower row; only positive similarities."""
    X = np.zeros((len(train), n_items), dtype=np.float64)
    for u, s in enumerate(train):
        X[u, s] = 1.0
    co = X.T @ X
    n = np.sqrt(np.diag(co))
    sim = co / (np.outer(n, n) + shrink)
    np.fill_diagonal(sim, 0.0)
    K = min(neighbours, max(n_items - 1, 0))
    rows = np.full((n_items, K), -1, dtype=np.int32)
    vals = np.zeros((n_items, K), dtype=np.float32)
    for i in range(n_items):
        order = np.lexsort((np.arange(n_items), -sim[i]))[:K]
        keep = order[sim[i, order] > 0]
        rows[i, :len(keep)] = keep
        vals[i, :len(keep)] = sim[i, keep]
    return rows, vals


def mmr_top_k(scores: np.ndarray, exclude: list[np.ndarray], item_emb: np.ndarray, diversity: float, k: int,
              candidates: int) -> np.ndarray:
    """Diversity re-ranking (see the module doc). Rows with fewer than k candidates keep -1."""
    base = top_k(scores, exclude, min(scores.shape[1], max(k, candidates)))
    out = np.full((len(scores), k), -1, dtype=np.int64)
    E = item_emb.astype(np.float64)
    for b in range(len(scores)):
        cand = base[b]
        cs = scores[b, cand].astype(np.float64)
        ok = np.isfinite(cs)
        ex = set(np.asarray(exclude[b]).tolist())
        ok &= np.array([c not in ex for c in cand])
        sims = E[cand] @ E[cand].T
        near = np.zeros(len(cand))
        for j in range(k):
            v = np.where(ok, cs - diversity * near, -np.inf)
            i = int(np.argmax(v))
            if not np.isfinite(v[i]):
                break
            out[b, j] = cand[i]
            ok[i] = False
            near = sims[i] if j == 0 else np.maximum(near, sims[i])
        # (the first pick has no neighbour: near starts at 0)
    return out


def retrieve_context(item_emb: np.ndarray, hist_rows: list[np.ndarray], mod_emb: np.ndarray | None,
                     mod_mask: np.ndarray | None, R: int) -> tuple[np.ndarray, np.ndarray]:
    """item_emb [N,D]; hist_rows: per user item rows given to fusion; mod_emb [B,M,D], mod_mask [B,M].
    Returns context rows [B,R] (-1 = none) and mask [B,R] float32."""
    B = len(hist_rows)
    out = np.full((B, R), -1, dtype=np.int64)
    mask = np.zeros((B, R), dtype=np.float32)
    if R == 0 or B == 0:
        return out, mask
    E = item_emb.astype(np.float64)
    q = np.zeros((B, E.shape[1]), dtype=np.float64)
    has = np.zeros(B, dtype=bool)
    for b in range(B):
        if mod_mask is not None and mod_mask[b].sum() > 0:
            q[b] = (mod_emb[b] * mod_mask[b][:, None]).sum(0)
            has[b] = True
        elif len(hist_rows[b]):
            q[b] = E[hist_rows[b]].sum(0)
            has[b] = True
    n = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(n > 0, q / np.where(n > 0, n, 1.0), q)
    s = q @ E.T
    for b in range(B):
        s[b, hist_rows[b]] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :R]          # by score desc, then row asc
    for b in range(B):
        if not has[b]:
            continue
        k = min(R, int(np.isfinite(s[b]).sum()))
        out[b, :k] = order[b, :k]
        mask[b, :k] = 1.0
    return out, mask


def fusion_inputs(item_emb: np.ndarray, histories: list[np.ndarray], L: int, M: int, R: int,
                  mod_emb: np.ndarray | None = None, mod_mask: np.ndarray | None = None):
    """Builds the fusion input tensors for users (histories: full item-row histories, oldest first):
    history_items are the item tokens (row + TOKEN_OFFSET, 0 = padding)."""
    B, D = len(histories), item_emb.shape[1]
    Lb = max(1, min(L, max((len(h) for h in histories), default=1)))
    items = np.zeros((B, Lb), dtype=np.int64)
    hist = np.zeros((B, Lb, D), dtype=np.float32)
    hmask = np.zeros((B, Lb), dtype=np.float32)
    used = []
    for b, h in enumerate(histories):
        h = np.asarray(h[-L:], dtype=np.int64)
        used.append(h)
        items[b, :len(h)] = h + TOKEN_OFFSET
        hist[b, :len(h)] = item_emb[h]
        hmask[b, :len(h)] = 1.0
    if mod_emb is None:
        mod_emb = np.zeros((B, M, D), dtype=np.float32)
        mod_mask = np.zeros((B, M), dtype=np.float32)
    ctx_rows, cmask = retrieve_context(item_emb, used, mod_emb, mod_mask, R)
    ctx = np.zeros((B, max(R, 1), D), dtype=np.float32)[:, :R] if R else np.zeros((B, 0, D), dtype=np.float32)
    for b in range(B):
        for j in range(R):
            if ctx_rows[b, j] >= 0:
                ctx[b, j] = item_emb[ctx_rows[b, j]]
    return {"history_items": items, "history": hist, "history_mask": hmask, "modalities": mod_emb.astype(np.float32),
            "modality_mask": mod_mask.astype(np.float32), "context": ctx, "context_mask": cmask}, used, ctx_rows


def first_step_scores(export_gen, user_state: torch.Tensor, cfg, steering: torch.Tensor | None = None,
                      item_emb: torch.Tensor | None = None) -> torch.Tensor:
    """Generator logits of the first decoding step for item columns: [B, N], plus the request's
    steering term steering . item_emb_i when given (zero rows add nothing)."""
    B = user_state.shape[0]
    dh = cfg.head_dim
    past = torch.zeros((cfg.gen_layers, B, cfg.gen_heads, 0, dh))
    tokens = torch.full((B, 1), BOS_TOKEN, dtype=torch.int64)
    logits, _, _ = export_gen(user_state, tokens, past, past)
    out = logits[:, TOKEN_OFFSET:]
    if steering is not None:
        out = out + steering @ item_emb.T
    return out


def top_k(scores: np.ndarray, exclude: list[np.ndarray], k: int) -> np.ndarray:
    """scores [B,N]; exclude per row; returns [B,k] rows ranked by score desc, ties by lower row."""
    s = scores.astype(np.float64).copy()
    out = np.zeros((len(s), k), dtype=np.int64)
    for b in range(len(s)):
        s[b, exclude[b]] = -np.inf
        order = np.lexsort((np.arange(s.shape[1]), -s[b]))
        out[b] = order[:k]
    return out

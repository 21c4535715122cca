"""Serving-side computations shared by training, evaluation and the golden recommend cases.

Retrieval rule for the fusion `context` (the Go engine reproduces it):
  r = normalise(sum of present modality embeddings) when any modality is present, else
      normalise(sum of the history item embeddings given to fusion), else no context;
  context = the max_context catalog items with the highest dot product r . e_i, excluding the
            items of the history given to fusion; ties by lower row; mask 1 for each.
Recommendation ("as served"): fusion on the last max_history items of the user's history
(oldest first), generator first step (tokens [[bos]], P = 0), logits of item columns plus the
fusion's steering output . each item's embedding, every item of the user's whole history
excluded, top k by score (ties by lower row).
"""
from __future__ import annotations

import numpy as np
import torch

from .data import BOS_TOKEN, TOKEN_OFFSET


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

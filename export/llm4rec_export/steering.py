"""Steering evaluation: does a typed, pictured or spoken request move the list while the
history keeps it personal?

For the most common categories of the catalog (up to 8, each on at most half the catalog), the
phrase EVAL_TEMPLATE names the category (a template training never saw). With a real user's
last `history` items (train + validation) as history, the share of the top 10 (history
excluded) in that category is category precision@10; averaged over categories and users. The
same with no request (what the history alone gives), with the phrase spoken by espeak-ng in a
voice the audio encoder never heard, and typed with no history at all.
"""
from __future__ import annotations

import numpy as np
import torch

from . import audio as audio_mod
from . import evaluate as ev
from . import requests as rq
from . import weights

MAX_CATEGORIES = 8
MAX_SHARE = 0.5


def steering_categories(ds) -> list[str]:
    n = ds.n_items
    count: dict[str, int] = {}
    for it in ds.items:
        for c in it.categories:
            count[c] = count.get(c, 0) + 1
    ok = [c for c, k in count.items() if 10 <= k <= MAX_SHARE * n]
    return sorted(ok, key=lambda c: (-count[c], c))[:MAX_CATEGORIES]


def manifest_section(ds, history: int, n_users: int) -> dict:
    """What the engine's `bench quality` needs to repeat this evaluation: the phrase template,
    the catalog's noun, every category's words, the evaluated categories, the history length,
    the number of users and the espeak-ng voice of the spoken requests."""
    cats = sorted({c for it in ds.items for c in it.categories})
    v, speed, pitch = audio_mod.HELDOUT_VOICE
    return {"template": rq.EVAL_TEMPLATE, "noun": rq.item_noun(ds),
            "category_words": {c: rq.category_words(c) for c in cats},
            "categories": steering_categories(ds), "history": history, "users": n_users,
            "voice": {"name": v, "speed": speed, "pitch": pitch}}


def spoken_embeddings(audio_model, phrases: list[str]) -> np.ndarray | None:
    if audio_model is None or not audio_mod.espeak_available():
        return None
    out = []
    with torch.no_grad():
        for p in phrases:
            wav = audio_mod.synthesize(p, audio_mod.HELDOUT_VOICE, weights.cache_dir() / "tts")
            lm = audio_mod.wav_log_mel(wav)
            e = audio_model(torch.from_numpy(lm[None].astype(np.float32)), torch.tensor([lm.shape[0]]))
            out.append(e[0].numpy())
    return np.stack(out).astype(np.float32)


def _tops(model, hists, mod=None, slot=None, k=10):
    """Top-k rows for each history, with mod [B,D] in modality slot `slot` (none: history only)."""
    if slot is None:
        return ev.served_top_k(model, ev.model_scores(model, hists), hists, k)
    B = len(hists)
    me = np.zeros((B, model.cfg.n_modalities, mod.shape[-1]), dtype=np.float32)
    mm = np.zeros((B, model.cfg.n_modalities), dtype=np.float32)
    me[:, slot] = mod
    mm[:, slot] = 1.0
    return ev.served_top_k(model, ev.model_scores(model, hists, mod_emb=me, mod_mask=mm), hists, k)


def steering_report(ds, sp, model, test_hist, embed_text, audio_model, n_users: int, seed: int,
                    history: int = 20) -> dict:
    """embed_text(list of str) -> [n,D] text embeddings."""
    cats = steering_categories(ds)
    if len(cats) < 2:
        return {"skipped": f"the catalog has {len(cats)} category(ies) of 10 items or more covering at most "
                           f"half of it: nothing to steer between"}
    noun = rq.item_noun(ds)
    phrases = [rq.category_phrase(c, noun) for c in cats]
    typed = embed_text(phrases)
    spoken = spoken_embeddings(audio_model, phrases)
    cand = [u for u in range(len(test_hist)) if len(test_hist[u]) >= history and sp.test[u] >= 0]
    rng = np.random.default_rng(seed)
    users = sorted(rng.choice(cand, size=min(n_users, len(cand)), replace=False).tolist())
    hists = [test_hist[u][-history:] for u in users]
    empty = [np.zeros(0, dtype=np.int64)]
    rows = {"none": [], "typed": [], "spoken": [], "typed_no_history": []}
    per_cat = {}
    none = _tops(model, hists)                   # the history's lists: the same for every category
    for j, c in enumerate(cats):
        in_c = np.array([c in it.categories for it in ds.items], dtype=np.float64)
        r = {"phrase": phrases[j], "none": float(in_c[none].mean()),
             "typed": float(in_c[_tops(model, hists, np.repeat(typed[j:j + 1], len(hists), 0), 0)].mean()),
             "typed_no_history": float(in_c[_tops(model, empty, typed[j:j + 1], 0)].mean())}
        if spoken is not None:
            r["spoken"] = float(in_c[_tops(model, hists, np.repeat(spoken[j:j + 1], len(hists), 0), 2)].mean())
        per_cat[c] = r
        for k in rows:
            if k in r:
                rows[k].append(r[k])
    out = {"categories": cats, "users": len(users), "history": history, "template": rq.EVAL_TEMPLATE,
           "voice": audio_mod.HELDOUT_VOICE[0] if spoken is not None else None,
           "by_category": per_cat}
    for k, v in rows.items():
        if v:
            out[f"precision@10_{k}"] = float(np.mean(v))
    return out

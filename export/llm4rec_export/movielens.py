"""MovieLens-100K (+ the ml-100k-media posters and IMDb text) -> the generic dataset format.

Output folder:
  items.jsonl        {"item_id","title","text","categories",["image"]}, in u.item order
  interactions.csv   user_id,item_id,timestamp,rating (every rating; sorted by user, time, item)
  users.jsonl        {"user_id","attributes":{"gender","age"}}
  images/ID.jpg      copies of the posters (paths in items.jsonl are relative to the folder)
  dataset.json       {"name","source","ship_text": false,...}: MovieLens/IMDb text may not ship
"""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_ARTICLE = re.compile(r"^(.*), (The|A|An|Les|La|Le|Il|Das|Der|Die|El|L')$")
_PAREN = re.compile(r"\s*\([^)]*\)")


def display_title(title: str) -> tuple[str, str]:
    """'Usual Suspects, The (1995)' -> ('The Usual Suspects', '1995')."""
    year = ""
    m = _YEAR.search(title)
    if m:
        year = m.group(1)
        title = title[:m.start()]
    title = title.strip()
    m = _ARTICLE.match(title)
    if m:
        sep = "" if m.group(2).endswith("'") else " "
        title = f"{m.group(2)}{sep}{m.group(1)}"
    return title, year


def _names(s: str, limit: int) -> list[str]:
    out: list[str] = []
    for part in _PAREN.sub("", s or "").split(","):
        p = part.strip()
        if p and p not in out:
            out.append(p)
    return out[:limit]


def item_text(title: str, year: str, genres: list[str], extra: dict | None) -> str:
    """The text the text encoder embeds; the most useful fields first (128-token limit)."""
    extra = extra or {}
    parts = [f"{title} ({year})." if year else f"{title}."]
    g = list(genres)
    for x in (extra.get("genres_imdb") or "").split(","):
        x = x.strip()
        if x and x not in g:
            g.append(x)
    if g:
        parts.append("Genres: " + ", ".join(g) + ".")
    if extra.get("director"):
        parts.append("Directed by " + ", ".join(_names(extra["director"], 2)) + ".")
    if extra.get("actors"):
        parts.append("Starring " + ", ".join(_names(extra["actors"], 4)) + ".")
    if extra.get("writers"):
        parts.append("Written by " + ", ".join(_names(extra["writers"], 3)) + ".")
    if extra.get("plot"):
        parts.append(extra["plot"].strip())
    return " ".join(parts)


def _read_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text(encoding="latin-1").splitlines() if ln.strip()]


def convert(ml100k: str | Path, media: str | Path | None, out: str | Path, images: str = "copy") -> dict:
    """Writes the generic dataset; returns counts. images: "copy", "symlink" or "none"."""
    ml, out = Path(ml100k), Path(out)
    media = Path(media) if media else None
    out.mkdir(parents=True, exist_ok=True)
    genres = [ln.split("|")[0] for ln in _read_lines(ml / "u.genre")]
    extras: dict[str, dict] = {}
    if media and (media / "items_extra.jsonl").is_file():
        for ln in (media / "items_extra.jsonl").read_text(encoding="utf-8").splitlines():
            if ln.strip():
                d = json.loads(ln)
                extras[str(d["item_id"])] = d
    n_img = 0
    if images != "none":
        (out / "images").mkdir(exist_ok=True)
    with open(out / "items.jsonl", "w", encoding="utf-8") as f:
        items = 0
        for ln in _read_lines(ml / "u.item"):
            cols = ln.split("|")
            iid, raw_title, date = cols[0], cols[1], cols[2]
            flags = cols[5:5 + len(genres)]
            cats = [g for g, x in zip(genres, flags) if x == "1" and g != "unknown"]
            title, year = display_title(raw_title)
            if not year and date:
                year = date[-4:]
            rec = {"item_id": iid, "title": raw_title, "text": item_text(title, year, cats, extras.get(iid)),
                   "categories": cats}
            poster = None
            if media:
                rel = (extras.get(iid) or {}).get("poster") or f"posters/{iid}.jpg"
                if (media / rel).is_file():
                    poster = media / rel
            if poster is not None and images != "none":
                dst = out / "images" / f"{iid}{poster.suffix.lower()}"
                if dst.exists() or dst.is_symlink():
                    dst.unlink()
                if images == "symlink":
                    dst.symlink_to(poster.resolve())
                else:
                    shutil.copyfile(poster, dst)
                rec["image"] = f"images/{dst.name}"
                n_img += 1
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            items += 1
    rows = []
    for ln in _read_lines(ml / "u.data"):
        u, i, r, t = ln.split("\t")
        rows.append((int(u), int(t), int(i), int(r)))
    rows.sort()
    with open(out / "interactions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user_id", "item_id", "timestamp", "rating"])
        for u, t, i, r in rows:
            w.writerow([u, i, t, r])
    users = 0
    with open(out / "users.jsonl", "w", encoding="utf-8") as f:
        for ln in _read_lines(ml / "u.user"):
            uid, age, gender = ln.split("|")[:3]
            f.write(json.dumps({"user_id": uid, "attributes": {"gender": gender, "age": int(age)}}) + "\n")
            users += 1
    meta = {"name": "ml-100k", "source": "MovieLens-100K (GroupLens) with ml-100k-media posters and IMDb text",
            "ship_text": False, "ship_media": False,
            "terms": "research use only; no redistribution of ratings, text or posters"}
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {"items": items, "interactions": len(rows), "users": users, "images": n_img}

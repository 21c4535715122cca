"""The generic dataset format, loading, fingerprint and the leave-one-out split.

A dataset folder holds:
  items.jsonl        {"item_id", "title"?, "text"?, "categories"?: [...], "image"?: path, "audio"?: path}
  interactions.csv   user_id,item_id,timestamp[,rating] (header line required)
  users.jsonl        optional: {"user_id", "attributes": {"gender"?, "age"?}}
  dataset.json       optional: {"name", "ship_text": bool, ...}
Media paths are relative to the folder. Interactions on items missing from items.jsonl are dropped.
"""
from __future__ import annotations

import csv
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TOKEN_OFFSET = 2
PAD_TOKEN = 0
BOS_TOKEN = 1


@dataclass
class Item:
    item_id: str
    title: str
    text: str
    categories: list[str]
    image: Path | None = None
    audio: Path | None = None


@dataclass
class Dataset:
    root: Path
    name: str
    items: list[Item]
    index: dict[str, int]            # item_id -> row
    users: list[str]                 # user ids with interactions, in first-seen order of the sorted log
    sequences: list[np.ndarray]      # per user: item rows in time order (ties by item id)
    timestamps: list[np.ndarray]
    attributes: dict[str, dict] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    n_interactions: int = 0
    dropped: int = 0

    @property
    def n_items(self) -> int:
        return len(self.items)

    def item_query_text(self, i: int) -> str:
        """Short text standing for a user's spoken or typed request that this item answers."""
        it = self.items[i]
        if it.categories:
            return " ".join(it.categories) + " movie" if self.name.startswith("ml-") else " ".join(it.categories)
        return it.title


def _id_key(ids: list[str]):
    numeric = all(s.lstrip("-").isdigit() for s in ids)
    return (lambda s: (int(s), s)) if numeric else (lambda s: (0, s))


def fingerprint(root: str | Path) -> str:
    """sha256 over the sorted list of `relative/path\\0sha256\\n` of every file in the folder."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        rel = p.relative_to(root).as_posix()
        fh = hashlib.sha256(p.read_bytes()).hexdigest()
        h.update(f"{rel}\0{fh}\n".encode())
    return h.hexdigest()


def load(root: str | Path) -> Dataset:
    root = Path(root)
    meta = {}
    if (root / "dataset.json").is_file():
        meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    items: list[Item] = []
    index: dict[str, int] = {}
    with open(root / "items.jsonl", encoding="utf-8") as f:
        for n, ln in enumerate(f, 1):
            if not ln.strip():
                continue
            d = json.loads(ln)
            if "item_id" not in d:
                raise ValueError(f"items.jsonl line {n}: missing item_id")
            iid = str(d["item_id"])
            if iid in index:
                raise ValueError(f"items.jsonl line {n}: duplicate item_id {iid!r}")
            cats = [str(c) for c in (d.get("categories") or [])]
            title = str(d.get("title") or "")
            text = str(d.get("text") or "")
            if not text:
                text = ". ".join(x for x in (title, ", ".join(cats)) if x) or iid
            img = root / d["image"] if d.get("image") else None
            aud = root / d["audio"] if d.get("audio") else None
            index[iid] = len(items)
            items.append(Item(iid, title or iid, text, cats, img if img and img.is_file() else None,
                              aud if aud and aud.is_file() else None))
    per_user: dict[str, list[tuple[int, str, int]]] = {}
    dropped = total = 0
    with open(root / "interactions.csv", newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        for col in ("user_id", "item_id", "timestamp"):
            if col not in (r.fieldnames or []):
                raise ValueError(f"interactions.csv: missing column {col}")
        for row in r:
            iid = str(row["item_id"])
            if iid not in index:
                dropped += 1
                continue
            ts = int(float(row["timestamp"]))
            per_user.setdefault(str(row["user_id"]), []).append((ts, iid, index[iid]))
            total += 1
    if dropped:
        print(f"data: dropped {dropped} interactions on items missing from items.jsonl", file=sys.stderr)
    ikey = _id_key(list(index))
    ukey = _id_key(list(per_user))
    users = sorted(per_user, key=ukey)
    seqs, times = [], []
    for u in users:
        ev = sorted(per_user[u], key=lambda e: (e[0], ikey(e[1])))
        seqs.append(np.array([e[2] for e in ev], dtype=np.int64))
        times.append(np.array([e[0] for e in ev], dtype=np.int64))
    attrs = {}
    if (root / "users.jsonl").is_file():
        with open(root / "users.jsonl", encoding="utf-8") as f:
            for ln in f:
                if ln.strip():
                    d = json.loads(ln)
                    attrs[str(d["user_id"])] = dict(d.get("attributes") or {})
    name = meta.get("name") or root.name
    return Dataset(root, name, items, index, users, seqs, times, attrs, meta, total, dropped)


@dataclass
class Split:
    """Leave-one-out by time: last = test, the one before = validation, the rest = train.
    Users with fewer than 3 interactions only train (val/test = -1)."""
    train: list[np.ndarray]
    val: np.ndarray
    test: np.ndarray


def split(ds: Dataset) -> Split:
    train, val, test = [], [], []
    for s in ds.sequences:
        if len(s) >= 3:
            train.append(s[:-2])
            val.append(s[-2])
            test.append(s[-1])
        else:
            train.append(s)
            val.append(-1)
            test.append(-1)
    return Split(train, np.array(val, dtype=np.int64), np.array(test, dtype=np.int64))


def age_band(age) -> str | None:
    try:
        a = int(age)
    except (TypeError, ValueError):
        return None
    if a < 25:
        return "<25"
    if a < 35:
        return "25-34"
    if a < 45:
        return "35-44"
    return "45+"


def user_groups(ds: Dataset) -> dict[str, list]:
    """Per user (in ds.users order): gender and age band, None when unknown."""
    g, a = [], []
    for u in ds.users:
        at = ds.attributes.get(u, {})
        gv = at.get("gender")
        g.append(str(gv) if gv not in (None, "") else None)
        a.append(age_band(at.get("age")))
    return {"gender": g, "age": a}


@dataclass
class Cutoff:
    """A global time cutoff: interactions with timestamp < `timestamp` are before it (the
    training side), the rest are after it (the stream). `fraction` is the requested share of
    interactions after the cutoff when it was given as a fraction (None for a timestamp)."""
    timestamp: int
    fraction: float | None
    before: int
    after: int

    def manifest(self) -> dict:
        return {"timestamp": self.timestamp, "fraction": self.fraction, "before": self.before, "after": self.after}


def resolve_cutoff(ds: Dataset, until: str | float | int) -> Cutoff:
    """The cutoff named by `until`: a fraction in (0, 1) is the share of interactions, counted
    in time order, that train (0.8: the last 20% by time are after the cutoff; the timestamp is
    that of the first interaction past the share, so ties at it all fall after); any other
    number is a Unix timestamp in seconds."""
    v = float(until)
    times = np.sort(np.concatenate(ds.timestamps)) if ds.timestamps else np.zeros(0, dtype=np.int64)
    if len(times) == 0:
        raise ValueError("train_until: the dataset has no interactions")
    frac = None
    if 0.0 < v < 1.0:
        frac = round(1.0 - v, 6)
        pos = min(int(np.floor(v * len(times))), len(times) - 1)
        ts = int(times[pos])
    elif v >= 1.0 and v == int(v):
        ts = int(v)
    else:
        raise ValueError(f"train_until: {until!r} is neither a fraction in (0, 1) nor a Unix timestamp")
    before = int(np.searchsorted(times, ts, side="left"))
    if before == 0:
        raise ValueError(f"train_until: no interaction before {ts}")
    return Cutoff(ts, frac, before, len(times) - before)


def truncate(ds: Dataset, cut: Cutoff) -> Dataset:
    """The dataset with only the interactions before the cutoff. The catalog (items) is kept
    whole: items are known with their content ahead of their first interaction, so an item
    first interacted with after the cutoff is still rankable by its content embedding. Users
    with no interaction before the cutoff are left out."""
    users, seqs, times = [], [], []
    for u, s, t in zip(ds.users, ds.sequences, ds.timestamps):
        keep = t < cut.timestamp
        if keep.any():
            users.append(u)
            seqs.append(s[keep])
            times.append(t[keep])
    n = int(sum(len(s) for s in seqs))
    meta = dict(ds.meta)
    meta["train_until"] = cut.manifest()
    return Dataset(ds.root, ds.name, ds.items, ds.index, users, seqs, times, ds.attributes, meta, n, ds.dropped)

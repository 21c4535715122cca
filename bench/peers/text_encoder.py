"""Text-encoder throughput with onnxruntime and Hugging Face tokenizers alone (no server): the
bundle's text_encoder.onnx on the queries of a file, tokenization included, per batch size.

    python text_encoder.py --bundle models/movielens-100k/1 --queries q.txt --batches 1,8,32 \
        --duration 3 [--threads 1]

Prints one JSON object: {"impl", "threads", "points": [{"batch", "samples_per_s", "p50_ms",
"p99_ms", "calls"}]}. Each point warms up for a fifth of its duration, then encodes successive
batches of queries (cycling through the file) for the duration.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import Pipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    queries = [q for q in Path(a.queries).read_text().splitlines() if q.strip()]
    p = Pipeline(a.bundle, a.threads)
    points = []
    at = 0
    for b in [int(x) for x in a.batches.split(",")]:
        def batch():
            nonlocal at
            out = [queries[(at + i) % len(queries)] for i in range(b)]
            at += b
            return out
        end = time.perf_counter() + a.duration / 5
        while time.perf_counter() < end:
            p.embed_texts(batch())
        lat = []
        start = time.perf_counter()
        end = start + a.duration
        while True:
            t = time.perf_counter()
            if t >= end:
                break
            p.embed_texts(batch())
            lat.append(time.perf_counter() - t)
        secs = time.perf_counter() - start
        ms = np.sort(np.array(lat)) * 1e3
        rank = lambda q: float(ms[max(0, int(np.ceil(q * len(ms))) - 1)])  # nearest rank
        points.append({"batch": b, "samples_per_s": b * len(lat) / secs, "p50_ms": rank(0.5),
                       "p99_ms": rank(0.99), "calls": len(lat)})
    print(json.dumps({"impl": "python-ort", "threads": a.threads, "points": points}))


if __name__ == "__main__":
    main()

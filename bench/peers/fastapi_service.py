"""POST /v1/recommend over the bundle's graphs with FastAPI and uvicorn: the Python service a
user would write around pipeline.Pipeline, the peer `make bench-peers` measures the engine's
server against.

    python fastapi_service.py --bundle models/movielens-100k/1 --port 8090 [--threads 1] [--workers 1]

Requests are the engine's for history and typed queries: {history, query?, k?, exclude_seen?,
debias?} (debias: absent or true = the bundle's default strength, false = none,
{"popularity": a} = a). The answer has the engine's shape for those fields: items (item_id,
title, log_prob, score), ips_alpha, context_items. GET /healthz/ready answers 200 once the graphs
are loaded. The handler is a plain function, so FastAPI runs it in its thread pool and
onnxruntime's sessions, which release the GIL while they run, serve requests side by side.
Run it with OPENBLAS_NUM_THREADS=1 (bench-peers does): numpy's BLAS otherwise starts a
busy-waiting thread per core for every matrix product, and with the thread pool calling it at
once the service's throughput collapses under concurrent callers.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Union

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import Pipeline  # noqa: E402


class RecommendRequest(BaseModel):
    history: list[str] = []
    query: Optional[str] = None
    k: int = 10
    exclude_seen: bool = True
    debias: Union[bool, dict, None] = None


def create_app(bundle: str, intra_threads: int = 0) -> FastAPI:
    pipe = Pipeline(bundle, intra_threads)
    app = FastAPI(title="recommend (Python peer)")

    @app.get("/healthz/ready")
    def ready():
        return {"ready": True}

    @app.post("/v1/recommend")
    def recommend(req: RecommendRequest):
        if not 1 <= req.k <= 100:
            raise HTTPException(400, "k must be within [1, 100]")
        alpha = None
        if req.debias is False:
            alpha = 0.0
        elif isinstance(req.debias, dict):
            alpha = float(req.debias.get("popularity", pipe.default_alpha))
        try:
            return pipe.recommend(req.history, req.query, req.k, req.exclude_seen, alpha)
        except KeyError as e:
            raise HTTPException(400, f"unknown item {e.args[0]}")

    return app


def app_from_env() -> FastAPI:
    """The app for `uvicorn --factory` (workers > 1): bundle and threads from the environment."""
    return create_app(os.environ["PEERS_BUNDLE"], int(os.environ.get("PEERS_THREADS", "0")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="models/movielens-100k/1")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads per session (0: onnxruntime's default)")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    a = ap.parse_args()
    import uvicorn

    os.environ["PEERS_BUNDLE"], os.environ["PEERS_THREADS"] = str(Path(a.bundle).resolve()), str(a.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    uvicorn.run("fastapi_service:app_from_env", factory=True, host=a.host, port=a.port, workers=a.workers,
                log_level="warning", access_log=False, app_dir=str(Path(__file__).resolve().parent))


if __name__ == "__main__":
    main()

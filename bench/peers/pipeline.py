"""The recommend pipeline of docs/BUNDLE.md in plain Python, as a user of the bundle would write it:
onnxruntime for the graphs, Hugging Face tokenizers for the text, numpy for the rest.

One request (a history of item ids, optionally a typed query):
  1. the query, if any, is tokenized (tokenizer.json, truncation to the manifest's max_length)
     and encoded by text_encoder.onnx into a unit vector that fills the text modality slot;
  2. context = the manifest's max_context catalog items with the highest r . e_i, r = the
     normalised sum of the present modality embeddings, else of the embeddings of the history
     given to fusion (its newest max_history items), that history excluded, ties by lower row;
  3. fusion.onnx gives the user state and the steering vector;
  4. generator.onnx, first step from [[bos]] with an empty cache, gives the logits;
  5. score = log-softmax over the item columns of (logits + steering . e_i + the similar-items
     term: the manifest's weight times the history's co-occurrence evidence, each of its newest
     max_history items' neighbours weighted decay^(age), normalised by the largest), minus
     alpha * log p_i (p_i = (popularity_i + smoothing) / (total + smoothing * n), at least
     clip_min; alpha the manifest's default unless the request says otherwise);
  6. seen items are excluded and the top k picked, re-ranked for diversity (maximal marginal
     relevance over the best `candidates`) when the manifest's ranking section sets a weight.

bench/peers/fastapi_service.py serves it over HTTP; test_pipeline.py checks it against the
bundle's golden recommend cases.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def session_options(intra_threads: int) -> ort.SessionOptions:
    """ONNX Runtime options: intra_threads > 0 sets the intra-op threads of the session (and one
    inter-op thread); 0 keeps ONNX Runtime's defaults."""
    so = ort.SessionOptions()
    if intra_threads > 0:
        so.intra_op_num_threads = intra_threads
        so.inter_op_num_threads = 1
    return so


class Pipeline:
    """The five graphs of a bundle and what ranking needs, loaded once; `recommend` is safe to
    call from several threads (onnxruntime sessions are)."""

    def __init__(self, bundle: str | os.PathLike, intra_threads: int = 0):
        self.dir = Path(bundle)
        m = json.loads((self.dir / "manifest.json").read_text())
        self.manifest = m
        g = m["graphs"]
        so = session_options(intra_threads)
        providers = ["CPUExecutionProvider"]
        # text_encoder.onnx is opened from its path so that its external weights resolve
        self.text = ort.InferenceSession(str(self.dir / g["text_encoder"]["file"]), so, providers=providers)
        self.fusion = ort.InferenceSession(str(self.dir / g["fusion"]["file"]), so, providers=providers)
        self.generator = ort.InferenceSession(str(self.dir / g["generator"]["file"]), so, providers=providers)

        tk = m["tokenizer"]
        self.tokenizer = Tokenizer.from_file(str(self.dir / tk["file"]))
        self.tokenizer.enable_truncation(tk["max_length"])
        self.tokenizer.enable_padding(pad_id=tk["pad_id"])

        it = m["items"]
        self.items = [json.loads(line) for line in (self.dir / it["file"]).read_text().splitlines() if line.strip()]
        self.row = {x["item_id"]: i for i, x in enumerate(self.items)}
        self.dim = m["embedding_dim"]
        self.emb = np.fromfile(self.dir / it["embeddings"], dtype="<f4").reshape(len(self.items), self.dim)
        self.offset, self.bos = it["token_offset"], it["bos_token"]

        self.max_history = m["fusion"]["max_history"]
        self.max_context = m["fusion"]["max_context"]
        self.modalities = m["fusion"]["modalities"]
        gen = m["generator"]
        self.empty_cache = np.zeros((gen["layers"], 1, gen["heads"], 0, gen["head_dim"]), dtype=np.float32)
        self.fusion_inputs = {i.name for i in self.fusion.get_inputs()}
        self.fusion_outputs = [o.name for o in self.fusion.get_outputs()]

        ips = m.get("ips", {})
        self.default_alpha = float(ips.get("default_alpha", 0.0))
        counts = np.array([float(x.get("popularity", 0)) for x in self.items])
        s, clip = float(ips.get("smoothing", 1.0)), float(ips.get("clip_min", 1e-4))
        p = (counts + s) / (counts.sum() + s * len(counts))
        self.log_p = np.log(np.maximum(p, clip)).astype(np.float32)

        sim = m.get("ranking", {}).get("similar_items")
        self.similar_weight = float(sim["weight"]) if sim else 0.0
        if self.similar_weight:
            shape = sim["rows"]["shape"]
            self.similar_rows = np.fromfile(self.dir / sim["rows"]["file"], dtype="<i4").reshape(shape)
            self.similar_sims = np.fromfile(self.dir / sim["weights"]["file"], dtype="<f4").reshape(shape)
            self.similar_decay, self.similar_history = float(sim["decay"]), int(sim["max_history"])

        div = m.get("ranking", {}).get("diversity", {})
        self.diversity = float(div.get("weight", 0.0))
        self.candidates = int(div.get("candidates", 50))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """[B, D] unit embeddings of texts (the text encoder's output)."""
        enc = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return self.text.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]

    def recommend(self, history: list[str], query: str | None = None, k: int = 10,
                  exclude_seen: bool = True, alpha: float | None = None) -> dict:
        """The top k for a history of item ids (oldest first) and an optional query; unknown ids
        raise KeyError."""
        alpha = self.default_alpha if alpha is None else alpha
        rows = np.array([self.row[h] for h in history], dtype=np.int64)
        hist = rows[-self.max_history:]
        D, M = self.dim, len(self.modalities)

        mods = np.zeros((1, M, D), dtype=np.float32)
        mod_mask = np.zeros((1, M), dtype=np.float32)
        if query:
            mods[0, self.modalities.index("text")] = self.embed_texts([query])[0]
            mod_mask[0, self.modalities.index("text")] = 1.0

        # retrieved context
        if mod_mask.any():
            r = mods[0].sum(0)
        elif len(hist):
            r = self.emb[hist].sum(0)
        else:
            r = None
        if r is not None and np.linalg.norm(r) > 0:
            s = self.emb @ (r / np.linalg.norm(r))
            s[hist] = -np.inf
            ctx = np.argsort(-s, kind="stable")[: min(self.max_context, len(s) - len(np.unique(hist)))]
        else:
            ctx = np.zeros(0, dtype=np.int64)

        L = max(len(hist), 1)
        feed = {
            "history": np.zeros((1, L, D), dtype=np.float32),
            "history_mask": np.zeros((1, L), dtype=np.float32),
            "modalities": mods,
            "modality_mask": mod_mask,
            "context": self.emb[ctx][None].astype(np.float32),
            "context_mask": np.ones((1, len(ctx)), dtype=np.float32),
        }
        if len(hist):
            feed["history"][0, : len(hist)] = self.emb[hist]
            feed["history_mask"][0, : len(hist)] = 1.0
        if "history_items" in self.fusion_inputs:
            items = np.zeros((1, L), dtype=np.int64)
            items[0, : len(hist)] = hist + self.offset
            feed["history_items"] = items
        out = dict(zip(self.fusion_outputs, self.fusion.run(None, feed)))
        user_state = out["user_state"]

        logits = self.generator.run(["logits"], {
            "user_state": user_state,
            "tokens": np.array([[self.bos]], dtype=np.int64),
            "past_keys": self.empty_cache,
            "past_values": self.empty_cache,
        })[0][0, self.offset:]
        terms = np.zeros(len(self.items), dtype=np.float64)
        steering = out.get("steering")
        if steering is not None and steering.any():
            terms += self.emb @ steering[0]
        if self.similar_weight and len(rows):
            terms += self.similar_weight * self.similar_evidence(rows)
        logits = logits + terms.astype(np.float32)

        z = logits - logits.max()
        lp = z - np.log(np.exp(z.astype(np.float64)).sum()).astype(np.float32)
        score = lp - np.float32(alpha) * self.log_p if alpha else lp.copy()
        if exclude_seen and len(rows):
            score[rows] = -np.inf

        top = self.top_k(score, k)
        return {
            "items": [{"item_id": self.items[i]["item_id"], "title": self.items[i]["title"],
                       "log_prob": float(lp[i]), "score": float(score[i])} for i in top],
            "ips_alpha": alpha,
            "context_items": [self.items[i]["item_id"] for i in ctx],
        }

    def similar_evidence(self, rows: np.ndarray) -> np.ndarray:
        """The history's co-occurrence evidence per item: over its newest max_history rows h_t
        (oldest first), sum of decay^(m-1-t) * sim(h_t, j) over h_t's neighbours j, divided by
        its largest value (all zero when nothing is a neighbour)."""
        hist = rows[-self.similar_history:]
        ev = np.zeros(len(self.items), dtype=np.float64)
        m = len(hist)
        for t, h in enumerate(hist):
            nb, sims = self.similar_rows[h], self.similar_sims[h]
            ok = nb >= 0
            np.add.at(ev, nb[ok], self.similar_decay ** (m - 1 - t) * sims[ok].astype(np.float64))
        mx = ev.max()
        return ev / mx if mx > 0 else ev

    def top_k(self, score: np.ndarray, k: int) -> list[int]:
        """The k best finite scores, ties by lower row; with a diversity weight, maximal marginal
        relevance over the best `candidates` (each pick maximises score - weight * its largest
        dot product with an item already picked)."""
        want = max(k, self.candidates) if self.diversity > 0 else k
        n = min(want, int(np.isfinite(score).sum()))
        part = np.argpartition(-score, n - 1)[:n] if n < len(score) else np.arange(len(score))
        # exact order among the partition's members, ties by lower row; the partition's cut can
        # fall inside a tie, so every item tied with the last one is considered
        cut = score[part].min() if n else np.inf
        cand = np.flatnonzero(score >= cut)
        cand = cand[np.lexsort((cand, -score[cand]))][:n]
        if self.diversity <= 0:
            return cand[:k].tolist()
        cs = score[cand].astype(np.float64)
        E = self.emb[cand].astype(np.float64)
        sims = E @ E.T
        near = np.zeros(len(cand))
        free = np.ones(len(cand), dtype=bool)
        out = []
        for j in range(min(k, len(cand))):
            v = np.where(free, cs - self.diversity * near, -np.inf)
            i = int(np.argmax(v))
            out.append(int(cand[i]))
            free[i] = False
            near = sims[i] if j == 0 else np.maximum(near, sims[i])
        return out

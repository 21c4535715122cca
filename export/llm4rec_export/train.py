"""Training of the fusion + generator model on the next-item objective.

Examples: every position t of a user's training sequence (time order) with history = the items
before it inside a window of at most max_history items; the generator is teacher-forced on
[bos, y1, .., y_{K-1}] -> [y1, .., yK], the next K items (first step weighted 1, later 0.5).
Windows are cut at a random offset every epoch.

IPS: each target item i is weighted by w_i = min(1 / p_i, w_max) renormalised to mean 1 over the
training targets, with propensity p_i = ((n_i + smoothing) / (max_j n_j + smoothing)) ** power
clipped to >= clip_min, where n_i is i's training interaction count.

Adversarial debiasing: a gender classifier reads user_state through a gradient-reversal layer
(scale = adversarial weight); the classifier minimises its loss, fusion maximises it.

Query modalities are simulated with modality dropout: for the target y, slot text = text
embedding of y's category request, image = image embedding of y's picture, audio = the same
request text embedding (the audio encoder maps speech into the text space); each slot present
with probability p_modality when available. Context = retrieval rule of rank.py.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .data import TOKEN_OFFSET
from .model import ModelConfig, Recommender, grad_reverse


@dataclass
class TrainConfig:
    epochs: int = 20
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    steps_ahead: int = 3
    later_step_weight: float = 0.5
    later_step_fraction: float = 0.25
    ips: bool = True
    ips_power: float = 0.5
    ips_max_weight: float = 10.0
    ips_smoothing: float = 1.0
    ips_clip_min: float = 1e-4
    adversarial_weight: float = 0.1
    p_modality: float = 0.15
    use_modalities: bool = True
    use_context: bool = True
    eval_every: int = 4
    select_best: bool = False     # False: keep the final weights (the schedule anneals to 0)
    seed: int = 0
    label_smoothing: float = 0.0
    item_delta_decay: float = 1.0


def ips_weights(counts: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    p = ((counts + cfg.ips_smoothing) / (counts.max() + cfg.ips_smoothing)) ** cfg.ips_power
    p = np.maximum(p, cfg.ips_clip_min)
    w = np.minimum(1.0 / p, cfg.ips_max_weight)
    mean = (w * counts).sum() / max(counts.sum(), 1)   # mean over training targets
    return (w / mean).astype(np.float32)


@dataclass
class TrainData:
    train: list[np.ndarray]               # item rows per user
    item_emb: np.ndarray                  # [N,D] content embeddings
    mod_tables: np.ndarray                # [N,M,D] modality query embedding of each item as a target
    mod_avail: np.ndarray                 # [N,M] 1 where available
    groups: np.ndarray | None = None      # [U] group index (gender) or -1
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _windows(train: list[np.ndarray], T: int, rng: np.random.Generator):
    out = []
    for u, s in enumerate(train):
        n = len(s) - 1                 # positions with a next item
        if n <= 0:
            continue
        off = int(rng.integers(0, T))
        starts = [0] + list(range(off if off > 0 else T, n, T))
        starts = sorted(set(x for x in starts if x < n))
        for a, b in zip(starts, starts[1:] + [n]):
            out.append((u, a, b))
    return out


def _batch(train, wins, K):
    B = len(wins)
    T = max(b - a for _, a, b in wins)
    tok = np.zeros((B, T), dtype=np.int64)
    tgt = np.full((B, T, K), -1, dtype=np.int64)
    users = np.zeros(B, dtype=np.int64)
    for r, (u, a, b) in enumerate(wins):
        s = train[u]
        tok[r, :b - a] = s[a:b] + TOKEN_OFFSET
        for t in range(b - a):
            nxt = s[a + t + 1:a + t + 1 + K]
            tgt[r, t, :len(nxt)] = nxt
        users[r] = u
    return torch.from_numpy(tok), torch.from_numpy(tgt), torch.from_numpy(users)


class Trainer:
    def __init__(self, mcfg: ModelConfig, tcfg: TrainConfig, data: TrainData, n_groups: int):
        self.m, self.t, self.d = mcfg, tcfg, data
        torch.manual_seed(tcfg.seed)
        self.rng = np.random.default_rng(tcfg.seed)
        self.model = Recommender(mcfg, n_groups if tcfg.adversarial_weight > 0 else 0)
        V = mcfg.num_tokens
        emb = torch.zeros(V, mcfg.dim)
        emb[TOKEN_OFFSET:] = torch.from_numpy(data.item_emb)
        self.model.generator.item_content.copy_(emb)
        self.item_emb = torch.from_numpy(data.item_emb)                  # [N,D]
        mt = torch.zeros(V, mcfg.n_modalities, mcfg.dim)
        mt[TOKEN_OFFSET:] = torch.from_numpy(data.mod_tables)
        self.mod_tables = mt
        ma = torch.zeros(V, mcfg.n_modalities)
        ma[TOKEN_OFFSET:] = torch.from_numpy(data.mod_avail)
        self.mod_avail = ma
        w = np.ones(V, dtype=np.float32)
        if tcfg.ips:
            w[TOKEN_OFFSET:] = ips_weights(data.counts.astype(np.float64), tcfg)
        self.w = torch.from_numpy(w)
        self.groups = torch.from_numpy(data.groups) if data.groups is not None else None

    def _context(self, tok, hmask, mod_raw, mmask):
        """Retrieval rule, vectorised over every position: [B,T,R] rows (+offset) and mask."""
        R = self.m.max_context
        B, T = tok.shape
        if R == 0 or not self.t.use_context:
            return torch.zeros(B, T, max(R, 0), dtype=torch.int64), torch.zeros(B, T, max(R, 0))
        E = self.model.item_table().detach()                                # [V,D], rows 0,1 zero
        hsum = torch.cumsum(E[tok] * hmask[..., None], dim=1)               # [B,T,D]
        msum = (mod_raw * mmask[..., None]).sum(2)
        has_m = mmask.sum(2) > 0
        r = torch.where(has_m[..., None], msum, hsum)
        r = F.normalize(r, dim=-1)
        s = r @ E.T                                                         # [B,T,V]
        seen = torch.zeros(B, T, E.shape[0], dtype=torch.bool)
        onehot = torch.zeros(B, T, E.shape[0])
        onehot.scatter_(2, tok[..., None], hmask[..., None])
        seen = torch.cumsum(onehot, dim=1) > 0
        s = s.masked_fill(seen, -1e9)
        s[..., :TOKEN_OFFSET] = -1e9
        top = torch.topk(s, R, dim=2).indices
        present = (hsum.abs().sum(-1) > 0) | has_m
        cmask = present[..., None].float().expand(B, T, R).clone()
        return top, cmask

    def step_loss(self, tok, tgt, users, train: bool):
        mc, tc = self.m, self.t
        model = self.model
        B, T = tok.shape
        hmask = (tok > 0).float()
        table = model.item_table()                                          # [V,D]
        H = model.hist_table(table)                                         # [V,d]
        h = H[tok]
        y1 = tgt[:, :, 0].clamp(min=0) + TOKEN_OFFSET                       # next item token
        M = mc.n_modalities
        if tc.use_modalities and mc.content:
            avail = self.mod_avail[y1]                                      # [B,T,M]
            draw = torch.rand(B, T, M) < tc.p_modality
            mmask = (avail > 0) & draw & (tgt[:, :, :1] >= 0)
            mmask = mmask.float()
            mod_raw = self.mod_tables[y1]                                   # [B,T,M,D]
        else:
            mmask = torch.zeros(B, T, M)
            mod_raw = torch.zeros(B, T, M, mc.dim)
        fz = model.fusion
        mod_keys = fz.mod_in(mod_raw) + fz.mod_type
        if mc.content and tc.use_context:
            ctx_rows, cmask = self._context(tok, hmask, mod_raw, mmask)
            ctx_tab = fz.ctx_in(table) + fz.ctx_type                       # [V,d]
            ctx_keys = ctx_tab[ctx_rows]
        else:
            R = mc.max_context
            ctx_keys = torch.zeros(B, T, R, mc.dim_small)
            cmask = torch.zeros(B, T, R)
        us = fz.forward_seq(h, hmask, mod_keys, mmask, ctx_keys, cmask)    # [B,T,D]
        valid = tgt[:, :, 0] >= 0
        u = us[valid]                                                       # [N,D]
        tg = tgt[valid]                                                     # [N,K]
        K = tg.shape[1]
        inp = torch.cat([torch.full((len(tg), 1), 1, dtype=torch.int64), tg[:, :K - 1].clamp(min=0) + TOKEN_OFFSET], 1)
        hid, table = model.generator.forward_train(u, inp, table if mc.content else None)  # [N,K,d]
        ok = tg >= 0
        yt = tg.clamp(min=0) + TOKEN_OFFSET
        bias = model.generator.out_bias
        # first step: every position; later steps: a random subset (the softmax over the catalog
        # dominates the cost)
        ce0 = F.cross_entropy(hid[:, 0] @ table.T + bias, yt[:, 0], reduction="none",
                              label_smoothing=tc.label_smoothing)
        w0 = self.w[yt[:, 0]]
        num = (ce0 * w0).sum()
        den = float(len(yt))
        if K > 1 and tc.later_step_weight > 0:
            pick = torch.rand(len(tg)) < tc.later_step_fraction
            if pick.any():
                hl, yl, okl = hid[pick, 1:], yt[pick, 1:], ok[pick, 1:].float()
                cel = F.cross_entropy((hl @ table.T + bias).reshape(-1, table.shape[0]), yl.reshape(-1),
                                      reduction="none", label_smoothing=tc.label_smoothing).view_as(yl)
                scale = tc.later_step_weight / tc.later_step_fraction
                num = num + scale * (cel * self.w[yl] * okl).sum()
                den = den + scale * float(okl.sum())
        loss = num / max(den, 1.0)
        adv_loss = torch.zeros(())
        if model.adversary is not None and self.groups is not None:
            g = self.groups[users][:, None].expand(B, T)[valid]
            keep = g >= 0
            if keep.any():
                z = grad_reverse(u[keep], tc.adversarial_weight)
                adv_loss = F.cross_entropy(model.adversary(z), g[keep])
        return loss, adv_loss

    def fit(self, evaluate=None, log=print, desc="train"):
        """evaluate(model) -> validation NDCG@10; keeps the best state."""
        from tqdm import tqdm

        mc, tc = self.m, self.t
        model = self.model
        decay, no_decay, delta = [], [], []
        for n, p in model.named_parameters():
            if n == "item_delta":
                delta.append(p)
            elif p.ndim < 2 or "pos" in n or "norm" in n.lower() or n.startswith("adversary"):
                no_decay.append(p)
            else:
                decay.append(p)
        groups = [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if delta:
            groups.append({"params": delta, "weight_decay": tc.item_delta_decay})
        opt = torch.optim.AdamW(groups, lr=tc.lr, foreach=True)
        per_epoch = math.ceil(len(_windows(self.d.train, mc.max_history, np.random.default_rng(0))) / tc.batch)
        total = max(1, tc.epochs * per_epoch)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.lr, total_steps=total + 1, pct_start=0.1)
        best, best_state, best_epoch, history = -1.0, None, 0, []
        t0 = time.time()
        bar = tqdm(range(tc.epochs), desc=desc, unit="epoch", leave=False)
        for ep in bar:
            model.train()
            wins = _windows(self.d.train, mc.max_history, self.rng)
            self.rng.shuffle(wins)
            tl = ta = 0.0
            nb = 0
            for s in range(0, len(wins), tc.batch):
                tok, tgt, users = _batch(self.d.train, wins[s:s + tc.batch], tc.steps_ahead)
                loss, adv = self.step_loss(tok, tgt, users, True)
                opt.zero_grad()
                (loss + adv).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                if sched.last_epoch < total:
                    sched.step()
                tl += loss.item()
                ta += adv.item()
                nb += 1
            rec = {"epoch": ep + 1, "loss": tl / max(nb, 1), "adv_loss": ta / max(nb, 1)}
            if evaluate is not None and ((ep + 1) % tc.eval_every == 0 or ep + 1 == tc.epochs):
                model.eval()
                v = evaluate(model)
                rec["val_ndcg@10"] = v
                if v > best or (not tc.select_best and ep + 1 == tc.epochs):
                    best, best_epoch = v, ep + 1
                    best_state = copy.deepcopy(model.state_dict())
            history.append(rec)
            bar.set_postfix({k: f"{v:.4f}" for k, v in rec.items() if k != "epoch"})
        if best_state is not None and tc.select_best:
            model.load_state_dict(best_state)
        model.eval()
        final = history[-1].get("val_ndcg@10", best) if history else best
        kept = best_epoch if tc.select_best else tc.epochs
        log(f"{desc}: {tc.epochs} epochs in {time.time() - t0:.0f}s, val NDCG@10 {final if not tc.select_best else best:.4f} "
            f"(epoch {kept} kept)")
        return {"history": history, "best_epoch": kept,
                "best_val_ndcg@10": best if tc.select_best else final, "seconds": time.time() - t0}

"""Fusion head and generation head.

Fusion (cross-modal attention): the history item embeddings go through causal self-attention
(positions counted from the oldest present item); the state of the most recent item queries one
attention over [history states; query modalities; retrieved context items; a learned null slot]
and the pooled result becomes `user_state` [B,D]. The attention weights (null slot left out) are
the `attention` output used for explanations. Every mask may be all zero (cold start).

Generator: a causal transformer decoder over item tokens, conditioned by adding a projection of
`user_state` to every input token, with past/present key-value tensors [N,B,H,P,Dh]. Item token
embeddings (tied with the output embeddings) are a learned ID part plus (when content is on) a
projection of the item content embedding, folded into a constant table at export.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

NEG = -1e9


@dataclass
class ModelConfig:
    dim: int = 384                # D, the shared embedding size
    num_tokens: int = 0           # V = items + token_offset
    dim_small: int = 64           # fusion width
    fusion_layers: int = 1
    fusion_heads: int = 2
    max_history: int = 50
    max_context: int = 10
    n_modalities: int = 3
    gen_layers: int = 2
    gen_heads: int = 4
    head_dim: int = 32
    max_steps: int = 20
    dropout: float = 0.2
    content: bool = True          # False: the ID-only ablation
    item_finetune: bool = True    # learn a residual on the content embeddings (see Recommender)


class Block(nn.Module):
    """Pre-LN transformer block; attention with an additive bias and optional KV cache."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, bias, past_k=None, past_v=None):
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q = q.view(b, s, self.heads, self.dh).transpose(1, 2)
        k = k.view(b, s, self.heads, self.dh).transpose(1, 2)
        v = v.view(b, s, self.heads, self.dh).transpose(1, 2)
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh) + bias
        y = torch.matmul(self.drop(torch.softmax(att, dim=-1)), v).transpose(1, 2).reshape(b, s, d)
        x = x + self.drop(self.proj(y))
        x = x + self.drop(self.ff(self.ln2(x)))
        return x, k, v


class Fusion(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, D = cfg.dim_small, cfg.dim
        self.cfg = cfg
        self.hist_in = nn.Sequential(nn.Linear(D, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.mod_in = nn.Linear(D, d)
        self.ctx_in = nn.Linear(D, d)
        self.pos = nn.Embedding(cfg.max_history, d)
        self.mod_type = nn.Parameter(torch.randn(cfg.n_modalities, d) * 0.02)
        self.ctx_type = nn.Parameter(torch.randn(d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, cfg.fusion_heads, cfg.dropout) for _ in range(cfg.fusion_layers)])
        self.ln_h = nn.LayerNorm(d)
        self.empty = nn.Parameter(torch.randn(d) * 0.02)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.null_k = nn.Parameter(torch.randn(d) * 0.02)
        self.null_v = nn.Parameter(torch.zeros(d))
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, D))
        self.drop = nn.Dropout(cfg.dropout)

    # -- shared pieces
    def encode_history(self, h, hmask):
        """h [B,L,d] projected history, hmask [B,L] -> contextual states [B,L,d] (causal)."""
        L = h.shape[1]
        pos = torch.clamp(torch.cumsum(hmask, dim=1) - 1.0, min=0.0).to(torch.int64)
        pos = torch.clamp(pos, max=self.cfg.max_history - 1)
        x = self.drop(h + self.pos(pos))
        ar = torch.arange(L, device=h.device)
        causal = (ar[None, :] > ar[:, None]).to(h.dtype) * NEG          # [L,L]
        bias = causal[None, None] + ((1.0 - hmask) * NEG)[:, None, None, :]
        for blk in self.blocks:
            x, _, _ = blk(x, bias)
        return self.ln_h(x)

    def _finish(self, h_query, pooled):
        return self.out(h_query + pooled)

    # -- serving graph
    def forward(self, history, history_mask, modalities, modality_mask, context, context_mask):
        return self.forward_projected(self.hist_in(history), history_mask, modalities, modality_mask,
                                      context, context_mask)

    def forward_projected(self, h, hmask, modalities, mmask, context, cmask):
        hs = self.encode_history(h, hmask)
        total = hmask.sum(dim=1, keepdim=True)
        sel = hmask * (torch.cumsum(hmask, dim=1) == total).to(h.dtype)          # one-hot: last present
        h_last = (sel[:, :, None] * hs).sum(1) + (total == 0).to(h.dtype) * self.empty
        m = self.mod_in(modalities) + self.mod_type[None]
        c = self.ctx_in(context) + self.ctx_type
        keys = torch.cat([hs, m, c], dim=1)
        mask = torch.cat([hmask, mmask, cmask], dim=1)
        q = self.q(h_last)
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = torch.matmul(self.k(keys), q[:, :, None])[:, :, 0] * scale + (1.0 - mask) * NEG
        null = (self.null_k * q).sum(-1, keepdim=True) * scale
        w = torch.softmax(torch.cat([scores, null], dim=1), dim=1)
        att = w[:, :-1]
        pooled = torch.matmul(att[:, None, :], self.v(keys))[:, 0] + w[:, -1:] * self.null_v
        return self._finish(h_last, pooled), att

    # -- training: every position of a window is a query
    def forward_seq(self, h, hmask, mod_keys, mmask, ctx_keys, cmask):
        """h [B,T,d] projected history window; mod_keys [B,T,M,d] (already projected + typed),
        mmask [B,T,M]; ctx_keys [B,T,R,d], cmask [B,T,R] -> user_state [B,T,D]."""
        hs = self.encode_history(h, hmask)
        T = h.shape[1]
        q = self.q(hs)                                                  # [B,T,d]
        scale = 1.0 / math.sqrt(q.shape[-1])
        ar = torch.arange(T, device=h.device)
        causal = (ar[None, :] > ar[:, None]).to(h.dtype) * NEG
        kh, vh = self.k(hs), self.v(hs)
        s_h = torch.matmul(q, kh.transpose(1, 2)) * scale + causal[None] + ((1.0 - hmask) * NEG)[:, None, :]
        km, vm = self.k(mod_keys), self.v(mod_keys)
        s_m = torch.einsum("btd,btmd->btm", q, km) * scale + (1.0 - mmask) * NEG
        kc, vc = self.k(ctx_keys), self.v(ctx_keys)
        s_c = torch.einsum("btd,btrd->btr", q, kc) * scale + (1.0 - cmask) * NEG
        null = (q * self.null_k).sum(-1, keepdim=True) * scale
        w = torch.softmax(torch.cat([s_h, s_m, s_c, null], dim=2), dim=2)
        M, R = s_m.shape[2], s_c.shape[2]
        w_h, w_m, w_c, w_n = w[..., :T], w[..., T:T + M], w[..., T + M:T + M + R], w[..., -1:]
        pooled = (torch.matmul(w_h, vh) + torch.einsum("btm,btmd->btd", w_m, vm)
                  + torch.einsum("btr,btrd->btd", w_c, vc) + w_n * self.null_v)
        return self._finish(hs, pooled)


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.gen_heads * cfg.head_dim
        V, D = cfg.num_tokens, cfg.dim
        self.user_in = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, d))
        self.tok_id = nn.Embedding(V, d)                 # tied: also the output table
        nn.init.normal_(self.tok_id.weight, std=0.02)
        self.out_bias = nn.Parameter(torch.zeros(V))
        self.pos = nn.Embedding(cfg.max_steps, d)
        self.blocks = nn.ModuleList([Block(d, cfg.gen_heads, cfg.dropout) for _ in range(cfg.gen_layers)])
        self.ln = nn.LayerNorm(d)
        if cfg.content:
            self.tok_c = nn.Linear(D, d, bias=False)
        self.register_buffer("item_content", torch.zeros(V, D), persistent=True)

    def tables(self, item_table=None):
        tok = self.tok_id.weight
        if self.cfg.content:
            tok = tok + self.tok_c(self.item_content if item_table is None else item_table)
        return tok, tok

    def forward_train(self, user_state, tokens, item_table=None):
        """user_state [N,D], tokens [N,S] -> (final hidden states [N,S,d], output table [V,d]);
        logits = hidden @ table.T + out_bias (teacher forcing)."""
        tok, out = self.tables(item_table)
        S = tokens.shape[1]
        x = tok[tokens] + self.pos(torch.arange(S, device=tokens.device))[None] + self.user_in(user_state)[:, None]
        ar = torch.arange(S, device=tokens.device)
        bias = ((ar[None, :] > ar[:, None]).to(x.dtype) * NEG)[None, None]
        for blk in self.blocks:
            x, _, _ = blk(x, bias)
        return self.ln(x), out


class ExportGenerator(nn.Module):
    """The generator graph with constant token/output tables and a KV cache."""

    def __init__(self, gen: Generator, token_offset: int, item_table=None):
        super().__init__()
        tok, _ = gen.tables(item_table)                 # tied token / output table
        self.tok = nn.Parameter(tok.detach().clone(), requires_grad=False)
        bias = gen.out_bias.detach().clone()
        bias[:token_offset] = -1e4                       # padding / BOS are never items
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.user_in, self.pos, self.blocks, self.ln = gen.user_in, gen.pos, gen.blocks, gen.ln
        self.max_steps = gen.cfg.max_steps

    def forward(self, user_state, tokens, past_keys, past_values):
        P = past_keys.shape[3]
        S = tokens.shape[1]
        steps = torch.arange(S, device=tokens.device) + P
        x = self.tok[tokens] + self.pos(torch.clamp(steps, max=self.max_steps - 1))[None] + self.user_in(user_state)[:, None]
        keys_all = torch.arange(S + P, device=tokens.device)
        bias = ((keys_all[None, :] > steps[:, None]).to(x.dtype) * NEG)[None, None]
        ks, vs = [], []
        for n, blk in enumerate(self.blocks):
            x, k, v = blk(x, bias, past_keys[n], past_values[n])
            ks.append(k)
            vs.append(v)
        logits = F.linear(self.ln(x[:, -1]), self.tok, self.bias)     # Gemm(transB): no transposed copy
        return logits, torch.stack(ks), torch.stack(vs)


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.w = w
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.w * g, None


def grad_reverse(x, w: float):
    return _GradReverse.apply(x, w)


class Recommender(nn.Module):
    """Training wrapper: fusion + generator (+ ID history table for the ID-only ablation,
    + gender adversary).

    With item_finetune, the served item embeddings (item_embeddings.f32) are
    normalise(content_i + delta_i): the content embedding plus a learned residual (weight-decayed,
    starting at zero), trained with the rest; they stay in the text encoder's space."""

    def __init__(self, cfg: ModelConfig, n_groups: int = 0):
        super().__init__()
        self.cfg = cfg
        self.fusion = Fusion(cfg)
        self.generator = Generator(cfg)
        if not cfg.content:
            self.id_hist = nn.Embedding(cfg.num_tokens, cfg.dim_small)
            nn.init.normal_(self.id_hist.weight, std=0.05)
        self.adversary = (nn.Sequential(nn.Linear(cfg.dim, 64), nn.ReLU(), nn.Linear(64, n_groups))
                          if n_groups >= 2 else None)
        if cfg.content and cfg.item_finetune:
            self.item_delta = nn.Parameter(torch.zeros(cfg.num_tokens, cfg.dim))

    def item_table(self):
        """[V,D] item embeddings as served (rows of padding/BOS are zero)."""
        c = self.generator.item_content
        if not (self.cfg.content and self.cfg.item_finetune):
            return c
        keep = (c.abs().sum(1, keepdim=True) > 0).to(c.dtype)
        return F.normalize(c + self.item_delta, dim=1, eps=1e-12) * keep

    def served_item_emb(self, token_offset: int):
        with torch.no_grad():
            return self.item_table()[token_offset:].numpy().astype("float32")

    def hist_table(self, item_table=None):
        if self.cfg.content:
            return self.fusion.hist_in(self.item_table() if item_table is None else item_table)
        return self.id_hist.weight

"""Item table, fusion head and generation head.

Items: every item token has one representation of width d, shared by the fusion's history, the
generator's input tokens and its output layer (tied, as SASRec ties them): a learned ID
embedding plus, when content is on, a linear projection of the item's content embedding
(normalise(text + image_mix * image), fixed). Padding and BOS rows have no content.

Fusion (cross-modal attention): the history items (ID + content) go through causal
self-attention (positions counted from the oldest present item); the state of the most recent
item queries one attention over [history states; query modalities; retrieved context items; a
learned null slot] and the pooled result becomes `user_state` [B,D]. The attention weights
(null slot left out) are the `attention` output used for explanations. Every mask may be all
zero (cold start). A third output, `steering` [B,D], is Up Down normalise(sum of the present
request modalities) (a rank-d map; zero when none): the engine adds steering . content_i to item i's logit, so
a typed, pictured or spoken request moves the list while the history keeps it personal; with no
request it adds nothing.

Generator: a causal transformer decoder over item tokens, conditioned by adding a projection of
`user_state` to every input token, with past/present key-value tensors [N,B,H,P,Dh]; logits =
hidden . item_table + out_bias (the item table folded into a constant at export).
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
    dim: int = 384                # D, the shared embedding size of content and requests
    num_tokens: int = 0           # V = items + token_offset
    dim_small: int = 64           # d, the width of item tokens, fusion and generator
    fusion_layers: int = 2
    fusion_heads: int = 2
    max_history: int = 100
    max_context: int = 10
    n_modalities: int = 3
    gen_layers: int = 2
    gen_heads: int = 2
    max_steps: int = 20
    dropout: float = 0.2
    content: bool = True          # False: the ID-only ablation (SASRec-class)
    steering: bool = True         # the request's direct term on item logits

    @property
    def head_dim(self) -> int:
        return self.dim_small // self.gen_heads


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


class Items(nn.Module):
    """The tied item table [V,d] = ID embedding + projection of the content embedding."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.id = nn.Embedding(cfg.num_tokens, cfg.dim_small)
        nn.init.normal_(self.id.weight, std=0.05)
        with torch.no_grad():
            self.id.weight[0].zero_()
        self.register_buffer("content", torch.zeros(cfg.num_tokens, cfg.dim), persistent=True)
        if cfg.content:
            self.proj = nn.Linear(cfg.dim, cfg.dim_small, bias=False)

    def table(self):
        t = self.id.weight
        if self.cfg.content:
            t = t + self.proj(self.content)
        return t

    def rep(self, tokens, content=None):
        """Representation of tokens [..] given their content rows [.., D] (serving passes the
        content as an input; training looks it up)."""
        e = self.id(tokens)
        if self.cfg.content:
            e = e + self.proj(self.content[tokens] if content is None else content)
        return e


class Fusion(nn.Module):
    def __init__(self, cfg: ModelConfig, items: Items):
        super().__init__()
        d, D = cfg.dim_small, cfg.dim
        self.cfg = cfg
        self.items = items
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
        # steering: a rank-d bilinear form between the request and each item's content,
        # steering . content_i = (down r) . (up^T content_i)
        self.steer_down = nn.Linear(D, d, bias=False) if cfg.steering else None
        self.steer_up = nn.Linear(d, D, bias=False) if cfg.steering else None
        if cfg.steering:
            nn.init.zeros_(self.steer_up.weight)

    # -- shared pieces
    def encode_history(self, h, hmask):
        """h [B,L,d] item representations, hmask [B,L] -> contextual states [B,L,d] (causal)."""
        L = h.shape[1]
        pos = torch.clamp(torch.cumsum(hmask, dim=1) - 1.0, min=0.0).to(torch.int64)
        pos = torch.clamp(pos, max=self.cfg.max_history - 1)
        x = self.drop(h * math.sqrt(h.shape[-1]) + self.pos(pos)) * hmask[..., None]
        ar = torch.arange(L, device=h.device)
        causal = (ar[None, :] > ar[:, None]).to(h.dtype) * NEG          # [L,L]
        bias = causal[None, None] + ((1.0 - hmask) * NEG)[:, None, None, :]
        for blk in self.blocks:
            x, _, _ = blk(x, bias)
        return self.ln_h(x)

    def steering(self, modalities, mmask):
        """W * normalise(sum of present modalities) [B,D]; zero rows when none is present."""
        if self.steer_down is None:
            return torch.zeros(modalities.shape[0], modalities.shape[-1], dtype=modalities.dtype)
        return self.steer_up(self.steering_low(modalities, mmask))

    def steering_low(self, modalities, mmask):
        """The request in the steering space [B,d] (zero rows when no modality is present)."""
        r = (modalities * mmask[..., None]).sum(-2)
        n = torch.sqrt((r * r).sum(-1, keepdim=True) + 1e-12)
        present = (mmask.sum(-1, keepdim=True) > 0).to(r.dtype)
        return self.steer_down(r / n) * present

    # -- serving graph
    def forward(self, history_items, history, history_mask, modalities, modality_mask, context, context_mask):
        h = self.items.rep(history_items, history) * history_mask[..., None]
        hs = self.encode_history(h, history_mask)
        total = history_mask.sum(dim=1, keepdim=True)
        sel = history_mask * (torch.cumsum(history_mask, dim=1) == total).to(h.dtype)  # one-hot: last present
        h_last = (sel[:, :, None] * hs).sum(1) + (total == 0).to(h.dtype) * self.empty
        m = self.mod_in(modalities) + self.mod_type[None]
        c = self.ctx_in(context) + self.ctx_type
        keys = torch.cat([hs, m, c], dim=1)
        mask = torch.cat([history_mask, modality_mask, context_mask], dim=1)
        q = self.q(h_last)
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = torch.matmul(self.k(keys), q[:, :, None])[:, :, 0] * scale + (1.0 - mask) * NEG
        null = (self.null_k * q).sum(-1, keepdim=True) * scale
        w = torch.softmax(torch.cat([scores, null], dim=1), dim=1)
        att = w[:, :-1]
        pooled = torch.matmul(att[:, None, :], self.v(keys))[:, 0] + w[:, -1:] * self.null_v
        return self.out(h_last + pooled), att, self.steering(modalities, modality_mask)

    # -- training: every position of a window is a query
    def forward_seq(self, h, hmask, mod_kv, mmask, ctx_kv, cmask):
        """h [B,T,d] item representations of a window; mod_kv: keys and values [B,T,M,d] of the
        request modalities (k and v already applied), mmask [B,T,M]; ctx_kv: keys and values
        [B,T,R,d] of the context items, cmask [B,T,R] -> user_state [B,T,D]. (Keys and values
        come in projected: training gathers them from per-item tables, ten times cheaper.)"""
        hs = self.encode_history(h, hmask)
        T = h.shape[1]
        q = self.q(hs)                                                  # [B,T,d]
        scale = 1.0 / math.sqrt(q.shape[-1])
        ar = torch.arange(T, device=h.device)
        causal = (ar[None, :] > ar[:, None]).to(h.dtype) * NEG
        kh, vh = self.k(hs), self.v(hs)
        s_h = torch.matmul(q, kh.transpose(1, 2)) * scale + causal[None] + ((1.0 - hmask) * NEG)[:, None, :]
        parts_s, parts_v = [s_h], []
        M = R = 0
        if mod_kv is not None:
            km, vm = mod_kv
            parts_s.append(torch.einsum("btd,btmd->btm", q, km) * scale + (1.0 - mmask) * NEG)
            M = km.shape[2]
        if ctx_kv is not None:
            kc, vc = ctx_kv
            parts_s.append(torch.einsum("btd,btrd->btr", q, kc) * scale + (1.0 - cmask) * NEG)
            R = kc.shape[2]
        null = (q * self.null_k).sum(-1, keepdim=True) * scale
        w = torch.softmax(torch.cat(parts_s + [null], dim=2), dim=2)
        pooled = torch.matmul(w[..., :T], vh) + w[..., -1:] * self.null_v
        if M:
            pooled = pooled + torch.einsum("btm,btmd->btd", w[..., T:T + M], vm)
        if R:
            pooled = pooled + torch.einsum("btr,btrd->btd", w[..., T + M:T + M + R], vc)
        return self.out(hs + pooled)


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig, items: Items):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim_small
        V, D = cfg.num_tokens, cfg.dim
        self.items = items
        self.user_in = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, d))
        self.out_bias = nn.Parameter(torch.zeros(V))
        self.pos = nn.Embedding(cfg.max_steps, d)
        self.blocks = nn.ModuleList([Block(d, cfg.gen_heads, cfg.dropout) for _ in range(cfg.gen_layers)])
        self.ln = nn.LayerNorm(d)

    def forward_train(self, user_state, tokens, table):
        """user_state [N,D], tokens [N,S], table [V,d] -> final hidden states [N,S,d];
        logits = hidden @ table.T + out_bias (teacher forcing)."""
        S = tokens.shape[1]
        x = table[tokens] + self.pos(torch.arange(S, device=tokens.device))[None] + self.user_in(user_state)[:, None]
        ar = torch.arange(S, device=tokens.device)
        bias = ((ar[None, :] > ar[:, None]).to(x.dtype) * NEG)[None, None]
        for blk in self.blocks:
            x, _, _ = blk(x, bias)
        return self.ln(x)


class ExportGenerator(nn.Module):
    """The generator graph with the constant item table and a KV cache."""

    def __init__(self, gen: Generator, token_offset: int):
        super().__init__()
        with torch.no_grad():
            tok = gen.items.table().detach().clone()
        self.tok = nn.Parameter(tok, requires_grad=False)
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
    """Training wrapper: item table + fusion + generator (+ gender adversary)."""

    def __init__(self, cfg: ModelConfig, n_groups: int = 0):
        super().__init__()
        self.cfg = cfg
        self.items = Items(cfg)
        self.fusion = Fusion(cfg, self.items)
        self.generator = Generator(cfg, self.items)
        self.adversary = (nn.Sequential(nn.Linear(cfg.dim, 64), nn.ReLU(), nn.Linear(64, n_groups))
                          if n_groups >= 2 else None)
        # serving-time ranking terms (rank.Ranking), chosen on validation after training; None
        # means logits (+ steering) and plain top k
        self.ranking = None

    def content_table(self):
        """[V,D] item content embeddings as served (rows of padding/BOS are zero)."""
        return self.items.content

    def served_item_emb(self, token_offset: int):
        return self.items.content[token_offset:].numpy().astype("float32")

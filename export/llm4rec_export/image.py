"""Images: the bundle's preprocessing recipe in numpy (the Go engine reproduces it) and a small
CNN image encoder trained from scratch, contrastively against the items' text embeddings.

Resize recipe (exact, so that Go can match it within the golden tolerance):
  * decode, convert to RGB (alpha dropped), scale to [0,1] as float64;
  * shorter side -> SIZE, longer side -> floor(long * SIZE / short);
  * separable triangle ("bilinear") filter, horizontal pass then vertical pass, no rounding in
    between: for output index i of an axis of input length n and output length m,
    scale = n/m, support = max(scale, 1), centre = (i + 0.5) * scale,
    lo = max(floor(centre - support + 0.5), 0), hi = min(floor(centre + support + 0.5), n),
    weight of input j in [lo, hi) = max(0, 1 - |(j - centre + 0.5) / max(scale, 1)|),
    weights divided by their sum (Pillow's resampling without its 8-bit rounding);
  * centre crop: top = floor((h - SIZE) / 2), left = floor((w - SIZE) / 2);
  * (x - mean) / std per channel, CHW float32.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SIZE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PREPROCESSING = {"size": SIZE, "mean": list(MEAN), "std": list(STD)}
# A catalog with fewer item images than this gets no trained image encoder, and its content
# embeddings are text only (the bundle's manifest says which: data.image_encoder_trained).
MIN_IMAGES = 8


@functools.lru_cache(maxsize=64)
def _weights(n: int, m: int) -> np.ndarray:
    w = np.zeros((m, n))
    scale = n / m
    fs = max(scale, 1.0)
    for i in range(m):
        c = (i + 0.5) * scale
        lo = max(int(math.floor(c - fs + 0.5)), 0)
        hi = min(int(math.floor(c + fs + 0.5)), n)
        j = np.arange(lo, hi)
        k = np.maximum(0.0, 1.0 - np.abs((j - c + 0.5) / fs))
        s = k.sum()
        if s > 0:
            w[i, lo:hi] = k / s
        else:
            w[i, min(max(int(c), 0), n - 1)] = 1.0
    return w


def resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """img [H,W,C] float64 -> [out_h,out_w,C]: horizontal pass, then vertical."""
    h, w, _ = img.shape
    x = img if out_w == w else np.matmul(_weights(w, out_w)[None], img)
    if out_h == h:
        return x
    return (_weights(h, out_h) @ x.reshape(h, -1)).reshape(out_h, out_w, x.shape[2])


def load_rgb(path_or_file) -> np.ndarray:
    from PIL import Image

    with Image.open(path_or_file) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


def to_square(img: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Resize (shorter side = size) + centre crop; [size,size,3] float64 in [0,1]."""
    h, w, _ = img.shape
    if w <= h:
        nw, nh = size, max(size, (h * size) // w)
    else:
        nh, nw = size, max(size, (w * size) // h)
    x = resize(img, nh, nw)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[top:top + size, left:left + size]


def normalize(sq: np.ndarray) -> np.ndarray:
    """[H,W,3] in [0,1] -> CHW float32 normalised."""
    x = (sq - np.array(MEAN)) / np.array(STD)
    return np.ascontiguousarray(x.transpose(2, 0, 1)).astype(np.float32)


def preprocess(path_or_file) -> np.ndarray:
    return normalize(to_square(load_rgb(path_or_file)))


def synthetic_png(path: Path, width: int = 190, height: int = 280, seed: int = 0) -> None:
    """A generated test picture (gradients, shapes, noise): shippable, unlike posters."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 0.5 + 0.5 * np.sin(x / 17.0) * np.cos(y / 23.0)
    g = y / height
    b = ((x - width / 2) ** 2 + (y - height / 3) ** 2 < (width / 4) ** 2).astype(np.float64) * 0.8 + 0.1
    img = np.stack([r, g, b], axis=2) + rng.normal(0, 0.05, (height, width, 3))
    Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8), "RGB").save(path, format="PNG")


class ImageEncoder(nn.Module):
    """pixels [B,3,224,224] -> L2-normalised [B,D]: five strided conv blocks + global pooling."""

    def __init__(self, dim: int, width: int = 32):
        super().__init__()
        c = [3, width, width * 2, width * 4, width * 6, width * 8]
        layers = [nn.Conv2d(3, c[1], 5, stride=4, padding=2), nn.BatchNorm2d(c[1]), nn.ReLU()]
        for i in range(1, 5):
            layers += [nn.Conv2d(c[i], c[i + 1], 3, stride=2 if i < 4 else 1, padding=1),
                       nn.BatchNorm2d(c[i + 1]), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Linear(c[5], 256), nn.GELU(), nn.Linear(256, dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.features(pixels).mean(dim=(2, 3))
        return F.normalize(self.proj(x), p=2.0, dim=1, eps=1e-12)


def load_posters(paths: list[Path], progress: bool = True) -> np.ndarray:
    """[N,3,224,224] uint8 (resized + cropped, not normalised), for training."""
    from tqdm import tqdm

    out = np.zeros((len(paths), 3, SIZE, SIZE), dtype=np.uint8)
    for i, p in enumerate(tqdm(paths, desc="images", unit="img", leave=False, disable=not progress)):
        out[i] = (to_square(load_rgb(p)) * 255.0).round().clip(0, 255).astype(np.uint8).transpose(2, 0, 1)
    return out


_MEAN_T = torch.tensor(MEAN).view(1, 3, 1, 1)
_STD_T = torch.tensor(STD).view(1, 3, 1, 1)


def _pixels(u8: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(u8).float() / 255.0 - _MEAN_T) / _STD_T


def train_image_encoder(images: np.ndarray, targets: np.ndarray, dim: int, epochs: int, seed: int,
                        log=print, width: int = 32) -> tuple[ImageEncoder, dict, np.ndarray]:
    """Contrastive (InfoNCE, in-batch negatives) image -> text embedding; 10% held out for the
    report. Returns the encoder, stats and the embeddings of all images."""
    from tqdm import tqdm

    n = len(images)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_held = max(1, n // 10) if n >= 20 else 0
    held, train = perm[:n_held], perm[n_held:]
    torch.manual_seed(seed)
    model = ImageEncoder(dim, width)
    tgt = torch.from_numpy(targets.astype(np.float32))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    bs = 64
    steps = max(1, epochs * math.ceil(len(train) / bs))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.15)
    bar = tqdm(range(epochs), desc="image encoder", unit="epoch", leave=False)
    for _ in bar:
        model.train()
        order = rng.permutation(train)
        tot = 0.0
        for s in range(0, len(order), bs):
            idx = np.sort(order[s:s + bs])
            x = _pixels(images[idx])
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            emb = model(x)
            t = tgt[idx]
            logits = emb @ t.T / 0.07
            y = torch.arange(len(idx))
            loss = 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        bar.set_postfix(loss=f"{tot / max(len(train), 1):.3f}")
    model.eval()
    embs = embed_images(model, images)
    stats = {"images": n, "heldout": int(n_held)}
    if n_held:
        e, t = torch.from_numpy(embs[held]), tgt[held]
        sims = e @ t.T
        ranks = (sims > sims.diagonal()[:, None]).sum(1)
        stats.update({"heldout_recall@10": float((ranks < 10).float().mean()),
                      "chance_recall@10": min(1.0, 10 / n_held),
                      "heldout_mean_cos_own_text": float(sims.diagonal().mean()),
                      "heldout_mean_cos_other_text": float((sims.sum() - sims.diagonal().sum()) / max(1, n_held * (n_held - 1)))})
        log(f"image encoder: held-out image->text recall@10 {stats['heldout_recall@10']:.3f} "
            f"(chance {stats['chance_recall@10']:.3f}), cos own {stats['heldout_mean_cos_own_text']:.3f} "
            f"vs other {stats['heldout_mean_cos_other_text']:.3f}")
    return model, stats, embs


def embed_images(model: ImageEncoder, images: np.ndarray, bs: int = 128) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for s in range(0, len(images), bs):
            out.append(model(_pixels(images[s:s + bs])).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.proj[-1].out_features), dtype=np.float32)

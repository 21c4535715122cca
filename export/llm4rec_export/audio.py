"""Audio: WAV decoding, the log-mel recipe of docs/BUNDLE.md in plain numpy (the Go engine
reproduces it), espeak-ng speech synthesis, and the GRU audio encoder.

The encoder maps speech into the text encoder's embedding space: it is trained on espeak-ng
renderings of short phrases (item titles, category requests, query templates) against the
frozen text embedding of the phrase.
"""
from __future__ import annotations

import hashlib
import math
import os
import shutil
import struct
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SAMPLE_RATE = 16000
N_FFT = 400
WIN_LENGTH = 400
HOP_LENGTH = 160
N_MELS = 64
F_MIN = 0.0
F_MAX = 8000.0
LOG_OFFSET = 1e-6
MAX_SECONDS = 10.0

PREPROCESSING = {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "win_length": WIN_LENGTH, "hop_length": HOP_LENGTH,
                 "n_mels": N_MELS, "f_min": F_MIN, "f_max": F_MAX, "log_offset": LOG_OFFSET,
                 "max_seconds": MAX_SECONDS}


# ---------------------------------------------------------------- WAV
def read_wav(path_or_bytes) -> tuple[np.ndarray, int]:
    """Decodes a PCM WAV (8/16/24/32-bit integer or 32/64-bit float, any channel count).
    Returns (mono float64 samples in [-1, 1], sample rate): channels averaged, integers divided
    by 2^(bits-1) (8-bit WAV is unsigned: 128 is subtracted first)."""
    data = path_or_bytes if isinstance(path_or_bytes, (bytes, bytearray)) else Path(path_or_bytes).read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos, fmt, pcm = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
            if fmt[0] == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: sub-format in the GUID
                fmt = (struct.unpack("<H", body[24:26])[0],) + fmt[1:]
        elif cid == b"data":
            pcm = body
        pos += 8 + size + (size & 1)
    if fmt is None or pcm is None:
        raise ValueError("WAV without fmt or data chunk")
    tag, channels, rate, _, _, bits = fmt
    if channels < 1 or rate < 1:
        raise ValueError("bad WAV header")
    width = bits // 8
    n = len(pcm) // (width * channels)
    pcm = pcm[:n * width * channels]
    if tag == 1:
        if bits == 8:
            x = np.frombuffer(pcm, dtype=np.uint8).astype(np.float64) - 128.0
        elif bits == 16:
            x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        elif bits == 24:
            b = np.frombuffer(pcm, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64)
        elif bits == 32:
            x = np.frombuffer(pcm, dtype="<i4").astype(np.float64)
        else:
            raise ValueError(f"unsupported PCM bit depth {bits}")
        x = x / float(2 ** (bits - 1))
    elif tag == 3 and bits in (32, 64):
        x = np.frombuffer(pcm, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
    else:
        raise ValueError(f"unsupported WAV format tag {tag}")
    return x.reshape(n, channels).mean(axis=1), rate


def write_wav16(path, samples: np.ndarray, rate: int) -> None:
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2").tobytes()
    hdr = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE"
    hdr += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    hdr += b"data" + struct.pack("<I", len(pcm))
    Path(path).write_bytes(hdr + pcm)


# ---------------------------------------------------------------- log-mel
def resample_linear(x: np.ndarray, src_rate: int, dst_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Linear interpolation at source positions j*src/dst, j = 0..floor((N-1)*dst/src)."""
    n = len(x)
    if n == 0 or src_rate == dst_rate:
        return x.astype(np.float64)
    m = (n - 1) * dst_rate // src_rate + 1
    pos = np.arange(m, dtype=np.float64) * src_rate / dst_rate
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    i1 = np.minimum(i0 + 1, n - 1)
    return x[i0] * (1.0 - frac) + x[i1] * frac


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, f_min=F_MIN, f_max=F_MAX) -> np.ndarray:
    """HTK mel triangles [n_mels, n_fft/2+1], unnormalised (peak 1). Triangle m spans the mel
    points m, m+1 (centre), m+2 of n_mels+2 points evenly spaced in mel from f_min to f_max."""
    pts = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1, dtype=np.float64) * sr / n_fft
    fb = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, c, hi = pts[m], pts[m + 1], pts[m + 2]
        up = (freqs - lo) / (c - lo)
        down = (hi - freqs) / (hi - c)
        fb[m] = np.maximum(0.0, np.minimum(up, down))
    return fb


_FB = None


def log_mel(samples: np.ndarray, rate: int) -> np.ndarray:
    """The bundle's audio recipe: mono samples at `rate` -> float32 [F, N_MELS]."""
    global _FB
    if _FB is None:
        _FB = mel_filterbank()
    x = resample_linear(np.asarray(samples, dtype=np.float64), rate)
    x = x[:int(MAX_SECONDS * SAMPLE_RATE)]
    if len(x) < WIN_LENGTH:
        x = np.concatenate([x, np.zeros(WIN_LENGTH - len(x))])
    frames = 1 + (len(x) - WIN_LENGTH) // HOP_LENGTH
    idx = np.arange(frames)[:, None] * HOP_LENGTH + np.arange(WIN_LENGTH)[None, :]
    window = 0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(WIN_LENGTH) / WIN_LENGTH)
    spec = np.abs(np.fft.rfft(x[idx] * window, n=N_FFT, axis=1)) ** 2
    return np.log(spec @ _FB.T + LOG_OFFSET).astype(np.float32)


def wav_log_mel(path_or_bytes) -> np.ndarray:
    x, rate = read_wav(path_or_bytes)
    return log_mel(x, rate)


# ---------------------------------------------------------------- speech synthesis
# Twenty-four voices: the five English accents of espeak-ng not kept for validation or the
# held-out voice (US, British, Caribbean, Lancaster, West Midlands), each with several of its
# voice variants, speeds and pitches. Chosen on the validation voices (30 epochs, the same
# phrases): mean cosine of the spoken phrase's embedding to its text embedding 0.941 and
# top-1 retrieval 0.993 with these 24, 0.902 and 0.979 with the first 16, 0.884 and 0.975
# with the first 8 (and 0.75 with the first four alone; 0.79 with four and per-utterance mean
# normalisation).
TRAIN_VOICES = [("en-us+m3", 160, 50), ("en-gb+f3", 140, 60), ("en-us+f2", 180, 45), ("en-029+m1", 150, 40),
                ("en-gb-x-gbclan+m2", 170, 45), ("en-gb-x-gbcwmd+f1", 145, 55), ("en-us+m5", 135, 35),
                ("en-gb+m1", 190, 50),
                ("en-us+Alex", 165, 50), ("en-gb+Annie", 150, 60), ("en-029+Andy", 175, 45),
                ("en-gb-x-gbclan+klatt", 140, 50), ("en-us+Linda", 160, 70), ("en-gb-x-gbcwmd+Michael", 155, 40),
                ("en-us+grandpa", 130, 45), ("en-gb+Steph", 185, 55),
                ("en-us+Andrea", 150, 60), ("en-gb+David", 170, 40), ("en-029+f2", 160, 65),
                ("en-gb-x-gbclan+Annie", 180, 55), ("en-us+Ed", 145, 45), ("en-gb-x-gbcwmd+m6", 165, 50),
                ("en-us+f5", 175, 75), ("en-gb+Mike", 140, 35)]
HELDOUT_VOICE = ("en-gb-scotland+m7", 155, 55)
# Voices for choosing the encoder's recipe: neither trained on nor the held-out voice the
# steering evaluation speaks in.
VALIDATION_VOICES = [("en-gb-x-rp+m4", 165, 50), ("en-us-nyc+f4", 150, 65)]


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesize(text: str, voice: tuple[str, int, int], cache: Path) -> Path:
    """espeak-ng rendering of text (22,050 Hz 16-bit mono WAV), cached by content."""
    v, speed, pitch = voice
    key = hashlib.sha256(f"{v}|{speed}|{pitch}|{text}".encode()).hexdigest()[:24]
    out = cache / f"{key}.wav"
    if not out.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".wav", dir=cache)
        os.close(fd)
        subprocess.run(["espeak-ng", "-v", v, "-s", str(speed), "-p", str(pitch), "-w", tmp, text],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.replace(tmp, out)
    return out


def synthesize_many(jobs: list[tuple[str, tuple]], cache: Path, workers: int = 2) -> list[np.ndarray]:
    """Returns the log-mel features of every (text, voice) job."""
    def one(job):
        return wav_log_mel(synthesize(job[0], job[1], cache))
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(one, jobs))


# ---------------------------------------------------------------- encoder
class AudioEncoder(nn.Module):
    """log_mel [B,F,64] + lengths [B] -> L2-normalised [B,D].

    Each utterance's own mean log-mel over its valid frames is subtracted (cepstral mean
    normalisation: it removes most of what a voice and a channel add to every frame, which
    generalised better to voices not heard in training, chosen on validation voices), the
    result divided by fixed per-band scales, frames past `lengths` zeroed; a strided Conv1d
    halves the frame rate, a unidirectional GRU reads the frames, and the masked mean of its
    outputs plus its output at the last valid frame are projected to D. Padding never changes
    the result (batch invariant)."""

    def __init__(self, dim: int, hidden: int = 192, conv: int = 128):
        super().__init__()
        self.register_buffer("std", torch.ones(N_MELS))
        self.conv = nn.Conv1d(N_MELS, conv, kernel_size=3, stride=2, padding=1)
        self.gru = nn.GRU(conv, hidden, batch_first=True)
        self.proj = nn.Sequential(nn.Linear(2 * hidden, 256), nn.GELU(), nn.Linear(256, dim))

    def forward(self, log_mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, f, _ = log_mel.shape
        lengths = torch.clamp(lengths, min=1)
        lengths = torch.minimum(lengths, torch.full_like(lengths, 1) * f)
        valid = (torch.arange(f, device=log_mel.device)[None, :] < lengths[:, None]).to(log_mel.dtype)
        utt_mean = (log_mel * valid[:, :, None]).sum(1) / lengths[:, None].to(log_mel.dtype)
        x = (log_mel - utt_mean[:, None, :]) / self.std * valid[:, :, None]
        x = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)          # [B, F2, C]
        f2 = x.shape[1]
        l2 = torch.div(lengths + 1, 2, rounding_mode="floor")
        valid2 = (torch.arange(f2, device=x.device)[None, :] < l2[:, None]).to(x.dtype)
        out, _ = self.gru(x)                                               # [B, F2, H]
        mean = (out * valid2[:, :, None]).sum(1) / l2[:, None].to(x.dtype)
        last_sel = (torch.arange(f2, device=x.device)[None, :] == (l2 - 1)[:, None]).to(x.dtype)
        last = (out * last_sel[:, :, None]).sum(1)
        return F.normalize(self.proj(torch.cat([mean, last], dim=1)), p=2.0, dim=1, eps=1e-12)


def pad_batch(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    f = max(x.shape[0] for x in feats)
    out = np.zeros((len(feats), f, N_MELS), dtype=np.float32)
    for i, x in enumerate(feats):
        out[i, :x.shape[0]] = x
    return torch.from_numpy(out), torch.tensor([x.shape[0] for x in feats], dtype=torch.int64)


def train_audio_encoder(phrases: list[str], targets: np.ndarray, cache: Path, dim: int, epochs: int,
                        seed: int, log=print) -> tuple[AudioEncoder, dict]:
    """Trains on espeak-ng renderings of every phrase in TRAIN_VOICES, reports retrieval on the
    HELDOUT_VOICE (same phrases, unseen voice). targets: [P, D] text embeddings of phrases."""
    from tqdm import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)          # the initial weights depend on the seed alone, not on earlier stages
    jobs = [(p, v) for p in phrases for v in TRAIN_VOICES]
    feats = synthesize_many(jobs, cache)
    labels = np.repeat(np.arange(len(phrases)), len(TRAIN_VOICES))
    held = synthesize_many([(p, HELDOUT_VOICE) for p in phrases], cache)
    allf = np.concatenate(feats, axis=0)
    model = AudioEncoder(dim)
    model.std.copy_(torch.from_numpy(allf.std(0) + 1e-3))
    tgt = torch.from_numpy(targets.astype(np.float32))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    bs = 32
    steps = epochs * math.ceil(len(feats) / bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=max(steps, 1), pct_start=0.1)
    order_by_len = np.argsort([x.shape[0] for x in feats])
    bar = tqdm(range(epochs), desc="audio encoder", unit="epoch", leave=False)
    for _ in bar:
        model.train()
        # batches of similar length (less padding), shuffled
        chunks = [order_by_len[i:i + bs] for i in range(0, len(order_by_len), bs)]
        perm = torch.randperm(len(chunks), generator=g).tolist()
        tot = 0.0
        for ci in perm:
            idx = chunks[ci]
            x, lens = pad_batch([feats[i] for i in idx])
            y = torch.from_numpy(labels[idx])
            emb = model(x, lens)
            logits = emb @ tgt.T / 0.05
            loss = F.cross_entropy(logits, y) + (1 - (emb * tgt[y]).sum(1)).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        bar.set_postfix(loss=f"{tot / len(feats):.3f}")
    model.eval()

    def retrieval(clips):
        with torch.no_grad():
            emb = torch.cat([model(*pad_batch(clips[i:i + 64])) for i in range(0, len(clips), 64)])
            sims = emb @ tgt.T
            ranks = (sims > sims.gather(1, torch.arange(len(phrases))[:, None])).sum(1)
            return ranks, sims.diagonal().mean().item()

    ranks, cos = retrieval(held)
    val = [retrieval(synthesize_many([(p, v) for p in phrases], cache)) for v in VALIDATION_VOICES]
    stats = {"phrases": len(phrases), "train_clips": len(feats), "heldout_clips": len(held),
             "heldout_voice": HELDOUT_VOICE[0], "heldout_top1": float((ranks == 0).float().mean()),
             "heldout_top10": float((ranks < 10).float().mean()), "heldout_mean_cos": cos,
             "validation_voices": [v[0] for v in VALIDATION_VOICES],
             "validation_top1": float(np.mean([(r == 0).float().mean().item() for r, _ in val])),
             "validation_mean_cos": float(np.mean([c for _, c in val])),
             "chance_top1": 1.0 / len(phrases)}
    log(f"audio encoder: validation voices top-1 {stats['validation_top1']:.3f} mean cos "
        f"{stats['validation_mean_cos']:.3f}; held-out voice top-1 {stats['heldout_top1']:.3f} top-10 "
        f"{stats['heldout_top10']:.3f} (chance {stats['chance_top1']:.4f}), mean cos {cos:.3f}")
    return model, stats

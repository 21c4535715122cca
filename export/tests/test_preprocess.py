"""Preprocessing recipes (docs/BUNDLE.md) that the Go engine reproduces."""
from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from llm4rec_export import audio, data, image


def _wav(path, samples, rate, bits=16, channels=1):
    x = np.asarray(samples)
    if bits == 16:
        pcm = np.round(x * 32767).astype("<i2").tobytes()
    elif bits == 8:
        pcm = (np.round(x * 127) + 128).astype(np.uint8).tobytes()
    else:
        raise ValueError
    hdr = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE" + b"fmt " + struct.pack(
        "<IHHIIHH", 16, 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    path.write_bytes(hdr + b"data" + struct.pack("<I", len(pcm)) + pcm)


def test_wav_decoding(tmp_path):
    x = np.array([0.0, 0.5, -0.5, 1.0])
    _wav(tmp_path / "a.wav", x, 8000)
    got, rate = audio.read_wav(tmp_path / "a.wav")
    assert rate == 8000 and np.allclose(got, np.round(x * 32767) / 32768)
    st = np.array([[0.5, -0.5], [0.25, 0.25]]).reshape(-1)
    _wav(tmp_path / "s.wav", st, 8000, channels=2)
    got, _ = audio.read_wav(tmp_path / "s.wav")
    assert np.allclose(got, [0.0, np.round(0.25 * 32767) / 32768])
    _wav(tmp_path / "b.wav", x[:3], 8000, bits=8)
    got, _ = audio.read_wav(tmp_path / "b.wav")
    assert np.allclose(got, [0.0, 64 / 128, -64 / 128])
    with pytest.raises(ValueError):
        audio.read_wav(b"not a wav file at all")


def test_resample_and_frames():
    x = np.arange(441, dtype=np.float64)
    y = audio.resample_linear(x, 44100, 16000)
    assert len(y) == (441 - 1) * 16000 // 44100 + 1
    assert np.allclose(y, np.arange(len(y)) * 44100 / 16000)      # linear signal stays linear
    assert np.array_equal(audio.resample_linear(x, 16000, 16000), x)
    for n in (0, 100, 400, 401, 560, 16000):
        f = audio.log_mel(np.zeros(n) + 0.1, 16000)
        want = 1 if n < 400 else 1 + (n - 400) // 160
        assert f.shape == (want, 64) and f.dtype == np.float32
    long = audio.log_mel(np.zeros(16000 * 12), 16000)
    assert long.shape[0] == 1 + (160000 - 400) // 160


def test_mel_filterbank_and_tone():
    fb = audio.mel_filterbank()
    assert fb.shape == (64, 201)
    assert np.all(fb >= 0) and fb.max() <= 1.0 + 1e-12
    # a 1 kHz tone peaks in the band whose centre is nearest 1 kHz
    t = np.arange(16000) / 16000
    lm = audio.log_mel(np.sin(2 * math.pi * 1000 * t), 16000)
    pts = audio.mel_to_hz(np.linspace(audio.hz_to_mel(0), audio.hz_to_mel(8000), 66))[1:-1]
    assert abs(int(lm.mean(0).argmax()) - int(np.abs(pts - 1000).argmin())) <= 1
    # direct formula for one frame
    x = np.random.default_rng(0).normal(size=400)
    w = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(400) / 400)
    p = np.abs(np.fft.rfft(x * w, 400)) ** 2
    assert np.allclose(audio.log_mel(x, 16000)[0], np.log(fb @ p + 1e-6), atol=1e-5)


def test_image_resize_matches_pillow_and_identity(tmp_path):
    from PIL import Image

    image.synthetic_png(tmp_path / "s.png", 190, 280)
    x = image.load_rgb(tmp_path / "s.png")
    sq = image.to_square(x)
    im = Image.open(tmp_path / "s.png").convert("RGB")
    nh = 280 * 224 // 190
    ref = np.asarray(im.resize((224, nh), Image.BILINEAR), dtype=np.float64)[(nh - 224) // 2:][:224] / 255
    assert np.abs(ref - sq).max() <= 1.0 / 255 + 1e-9          # Pillow rounds to 8 bits, we do not
    same = np.random.default_rng(0).random((224, 224, 3))
    assert np.array_equal(image.to_square(same), same)
    px = image.preprocess(tmp_path / "s.png")
    assert px.shape == (3, 224, 224) and px.dtype == np.float32
    assert np.allclose(px[:, 0, 0], (sq[0, 0] - np.array(image.MEAN)) / np.array(image.STD), atol=1e-6)


def test_dataset_tie_break_and_missing_items(tmp_path):
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps({"item_id": str(i)}) for i in (10, 9, 100)) + "\n")
    (tmp_path / "interactions.csv").write_text("user_id,item_id,timestamp\n1,100,5\n1,10,5\n1,9,5\n1,77,1\n2,9,1\n")
    ds = data.load(tmp_path)
    assert ds.dropped == 1 and ds.n_interactions == 4
    assert [ds.items[i].item_id for i in ds.sequences[0]] == ["9", "10", "100"]   # numeric tie-break
    assert ds.items[0].text == "10"                                                  # no title/text: the id
    sp = data.split(ds)
    assert sp.test[1] == -1 and len(sp.train[1]) == 1

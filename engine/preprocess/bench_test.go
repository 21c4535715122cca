package preprocess

import (
	"bytes"
	"image/jpeg"
	"image/png"
	"testing"

	"github.com/go-audio/wav"
)

// BenchmarkImagePixels measures a whole Pixels call on typical uploads; the
// decode-only sub-benchmarks are the baseline (the standard library's
// decoder alone) so that the cost of resize, crop and normalisation can be
// read off.
func BenchmarkImagePixels(b *testing.B) {
	jpg := encodeJPEG(b, noiseImage(640, 480), 85)
	pngData := encodePNG(b, noiseImage(640, 480))
	cfg := ImageConfig{}
	dst := make([]float32, cfg.Len())
	for _, in := range []struct {
		name string
		data []byte
	}{{"jpeg-640x480", jpg}, {"png-640x480", pngData}} {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.data)))
			for b.Loop() {
				if err := cfg.Pixels(in.data, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("jpeg-640x480-decode-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jpeg.Decode(bytes.NewReader(jpg)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("png-640x480-decode-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := png.Decode(bytes.NewReader(pngData)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAudioLogMel measures LogMel on a 10 s clip (the most that is
// kept) at the model rate and at 44.1 kHz stereo, which adds resampling.
// The decode-only sub-benchmark is the baseline: the go-audio/wav decoder
// reading the whole clip on its own.
func BenchmarkAudioLogMel(b *testing.B) {
	f, err := NewAudioFeaturizer(AudioConfig{})
	if err != nil {
		b.Fatal(err)
	}
	for _, in := range []struct {
		name string
		data []byte
	}{
		{"16k-mono-16bit-10s", sineWAV(10, 16000, 1, 16, 1000, 0.5)},
		{"44.1k-stereo-16bit-10s", sineWAV(10, 44100, 2, 16, 1000, 0.5)},
	} {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.data)))
			var dst []float32
			for b.Loop() {
				var err error
				if dst, _, err = f.AppendLogMel(dst[:0], in.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("16k-mono-16bit-10s-decode-only", func(b *testing.B) {
		data := sineWAV(10, 16000, 1, 16, 1000, 0.5)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := wav.NewDecoder(bytes.NewReader(data)).FullPCMBuffer(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

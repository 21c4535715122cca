package preprocess

import (
	"image/color"
	"math"
	"testing"
)

// The fuzz targets use small limits so that each input runs in
// milliseconds; the code paths are the same as with the defaults. Seed
// inputs live in testdata/fuzz/<FuzzName>/ as well as below.

var fuzzImageConfig = ImageConfig{Size: 16, MaxWidth: 1024, MaxHeight: 1024, MaxPixels: 1 << 18, MaxBytes: 1 << 20}

func FuzzImagePixels(f *testing.F) {
	f.Add(encodePNG(f, noiseImage(7, 5)))
	f.Add(encodePNG(f, solidNRGBA(3, 9, color.NRGBA{1, 2, 3, 4})))
	f.Add(encodeJPEG(f, noiseImage(9, 6), 80))
	f.Add(pngHeader(100000, 100000, nil))
	f.Add(jpegHeader(100, 100))
	f.Add([]byte("GIF89a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		px, err := fuzzImageConfig.AppendPixels(nil, data)
		if err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			if len(px) != 0 {
				t.Fatalf("%d values returned with an error", len(px))
			}
			return
		}
		if len(px) != fuzzImageConfig.Len() {
			t.Fatalf("len %d, want %d", len(px), fuzzImageConfig.Len())
		}
		lo, hi := norm(0, 0), norm(255, 0) // widest range: smallest std
		for i, v := range px {
			if math.IsNaN(float64(v)) || v < lo-1 || v > hi+1 {
				t.Fatalf("value %d = %v out of range", i, v)
			}
		}
	})
}

var fuzzAudio, _ = NewAudioFeaturizer(AudioConfig{MaxSeconds: 0.5, MaxBytes: 1 << 20})

func FuzzAudioLogMel(f *testing.F) {
	f.Add(sineWAV(0.05, 16000, 1, 16, 1000, 0.5))
	f.Add(sineWAV(0.02, 44100, 2, 24, 440, 0.5))
	f.Add(sineWAV(0.03, 8000, 1, 8, 1000, 0.5))
	f.Add(makeWAV(wavSpec{channels: 1, rate: 16000, bits: 16, samples: sine(100, 16000, 1, 16, 1000, 0.5), before: rawChunk("LIST", []byte("INFOabc"))}))
	f.Add([]byte("RIFF\x04\x00\x00\x00WAVE"))
	f.Fuzz(func(t *testing.T, data []byte) {
		mel, frames, err := fuzzAudio.LogMel(data)
		if err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			if mel != nil || frames != 0 {
				t.Fatalf("%d values returned with an error", len(mel))
			}
			return
		}
		c := fuzzAudio.Config()
		if frames < 1 || frames > FrameCount(int(c.MaxSeconds*float64(c.SampleRate)), c.WinLength, c.HopLength) || len(mel) != frames*c.NMels {
			t.Fatalf("%d frames, %d values", frames, len(mel))
		}
		// Samples are in [-1, 1], so the power of a band is bounded by
		// (sum of the window)^2 times its total weight.
		for i, v := range mel {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || v < float32(math.Log(c.LogOffset))-1e-3 || v > 20 {
				t.Fatalf("value %d = %v out of range", i, v)
			}
		}
	})
}

package preprocess

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Parity tolerances against the export's Python preprocessing.
const (
	// Image values are in normalised units, where one 8-bit step is
	// (1/255)/std, about 0.017 for ImageNet's std. The Go and Python
	// resize kernels and JPEG colour conversions differ by a step or two
	// almost everywhere and by more at sharp edges, so the mean is held to
	// about one step and the maximum to about 14.
	goldenImageMeanAbs = 0.02
	goldenImageMaxAbs  = 0.25
	// Log-mel values are computed with the same formulas in float64 on
	// both sides.
	goldenAudioMaxAbs = 1e-3
)

// goldenBundles returns the bundle folders under models/ that have
// golden/index.json, and $LLM4REC_TEST_BUNDLE when set.
func goldenBundles(t *testing.T) []string {
	var out []string
	if dir := os.Getenv("LLM4REC_TEST_BUNDLE"); dir != "" {
		out = append(out, dir)
	}
	matches, err := filepath.Glob(filepath.Join("..", "..", "models", "*", "*", "golden", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range matches {
		out = append(out, filepath.Dir(filepath.Dir(m)))
	}
	return out
}

type goldenTensor struct {
	File  string `json:"file"`
	Shape []int  `json:"shape"`
}

type goldenIndex struct {
	Preprocess struct {
		Image *struct {
			File   string       `json:"file"`
			Pixels goldenTensor `json:"pixels"`
		} `json:"image"`
		Audio *struct {
			File   string       `json:"file"`
			LogMel goldenTensor `json:"log_mel"`
		} `json:"audio"`
	} `json:"preprocess"`
}

type goldenManifest struct {
	Preprocessing struct {
		Image *struct {
			Size int        `json:"size"`
			Mean [3]float32 `json:"mean"`
			Std  [3]float32 `json:"std"`
		} `json:"image"`
		Audio *struct {
			SampleRate int     `json:"sample_rate"`
			NFFT       int     `json:"n_fft"`
			WinLength  int     `json:"win_length"`
			HopLength  int     `json:"hop_length"`
			NMels      int     `json:"n_mels"`
			FMin       float64 `json:"f_min"`
			FMax       float64 `json:"f_max"`
			LogOffset  float64 `json:"log_offset"`
			MaxSeconds float64 `json:"max_seconds"`
		} `json:"audio"`
	} `json:"preprocessing"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// readFloat32s reads a raw little-endian float32 tensor and checks its size
// against shape.
func readFloat32s(t *testing.T, path string, shape []int) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	if len(b) != 4*n {
		t.Fatalf("%s: %d bytes, shape %v needs %d", path, len(b), shape, 4*n)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func diffStats(got, want []float32) (meanAbs, maxAbs float64, at int) {
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		meanAbs += d
		if d > maxAbs || math.IsNaN(d) {
			maxAbs, at = d, i
		}
	}
	return meanAbs / float64(len(got)), maxAbs, at
}

// TestGoldenParity compares this package with the reference inputs and
// outputs that the export writes next to each model (docs/BUNDLE.md,
// golden/). It skips when no bundle with goldens is present.
func TestGoldenParity(t *testing.T) {
	bundles := goldenBundles(t)
	if len(bundles) == 0 {
		t.Skip("no models/*/*/golden/index.json: run the export to produce goldens")
	}
	for _, dir := range bundles {
		t.Run(filepath.Base(filepath.Dir(dir))+"/"+filepath.Base(dir), func(t *testing.T) {
			checkGoldenBundle(t, dir)
		})
	}
}

// checkGoldenBundle compares the preprocess goldens of the bundle in dir.
func checkGoldenBundle(t *testing.T, dir string) {
	t.Helper()
	var idx goldenIndex
	readJSON(t, filepath.Join(dir, "golden", "index.json"), &idx)
	var man goldenManifest
	readJSON(t, filepath.Join(dir, "manifest.json"), &man)
	golden := func(name string) string { return filepath.Join(dir, "golden", name) }

	t.Run("image", func(t *testing.T) {
		g := idx.Preprocess.Image
		if g == nil {
			t.Skip("no preprocess.image golden")
		}
		var cfg ImageConfig
		if m := man.Preprocessing.Image; m != nil {
			cfg.Size, cfg.Mean, cfg.Std = m.Size, m.Mean, m.Std
		}
		if want := []int{3, cfg.withDefaults().Size, cfg.withDefaults().Size}; len(g.Pixels.Shape) != 3 || g.Pixels.Shape[0] != want[0] || g.Pixels.Shape[1] != want[1] || g.Pixels.Shape[2] != want[2] {
			t.Fatalf("golden shape %v, want %v", g.Pixels.Shape, want)
		}
		data, err := os.ReadFile(golden(g.File))
		if err != nil {
			t.Fatal(err)
		}
		got, err := cfg.AppendPixels(nil, data)
		if err != nil {
			t.Fatal(err)
		}
		want := readFloat32s(t, golden(g.Pixels.File), g.Pixels.Shape)
		mean, maxd, at := diffStats(got, want)
		t.Logf("image: mean |diff| %.5f, max %.5f at %d", mean, maxd, at)
		if mean > goldenImageMeanAbs || maxd > goldenImageMaxAbs {
			t.Errorf("image parity: mean |diff| %.5f (limit %v), max %.5f (limit %v) at index %d: got %v, want %v",
				mean, goldenImageMeanAbs, maxd, goldenImageMaxAbs, at, got[at], want[at])
		}
	})

	t.Run("audio", func(t *testing.T) {
		g := idx.Preprocess.Audio
		if g == nil {
			t.Skip("no preprocess.audio golden")
		}
		var cfg AudioConfig
		if m := man.Preprocessing.Audio; m != nil {
			cfg = AudioConfig{SampleRate: m.SampleRate, NFFT: m.NFFT, WinLength: m.WinLength, HopLength: m.HopLength,
				NMels: m.NMels, FMin: m.FMin, FMax: m.FMax, LogOffset: m.LogOffset, MaxSeconds: m.MaxSeconds}
		}
		data, err := os.ReadFile(golden(g.File))
		if err != nil {
			t.Fatal(err)
		}
		got, frames, err := cfg.LogMel(data)
		if err != nil {
			t.Fatal(err)
		}
		nMels := cfg.withDefaults().NMels
		if len(g.LogMel.Shape) != 2 || g.LogMel.Shape[0] != frames || g.LogMel.Shape[1] != nMels {
			t.Fatalf("golden shape %v, Go gives [%d %d]", g.LogMel.Shape, frames, nMels)
		}
		want := readFloat32s(t, golden(g.LogMel.File), g.LogMel.Shape)
		mean, maxd, at := diffStats(got, want)
		t.Logf("audio: mean |diff| %.2e, max %.2e at %d", mean, maxd, at)
		if maxd > goldenAudioMaxAbs {
			t.Errorf("audio parity: max |diff| %.2e (limit %v) at frame %d band %d: got %v, want %v",
				maxd, goldenAudioMaxAbs, at/nMels, at%nMels, got[at], want[at])
		}
	})
}

// TestGoldenReader runs checkGoldenBundle on a bundle written here in the
// documented layout, with the Go output as the golden, so that the parity
// test's reading of index.json, manifest.json and the tensors is itself
// tested before real goldens exist.
func TestGoldenReader(t *testing.T) {
	dir := t.TempDir()
	g := filepath.Join(dir, "golden")
	if err := os.Mkdir(g, 0o755); err != nil {
		t.Fatal(err)
	}
	img := encodePNG(t, noiseImage(300, 200))
	wavData := sineWAV(0.5, 22050, 2, 16, 800, 0.4)
	px, err := ImageConfig{Size: 64}.AppendPixels(nil, img)
	if err != nil {
		t.Fatal(err)
	}
	mel, frames, err := AudioConfig{NMels: 40, MaxSeconds: 5}.LogMel(wavData)
	if err != nil {
		t.Fatal(err)
	}
	raw := func(v []float32) []byte {
		b := make([]byte, 0, 4*len(v))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
		return b
	}
	files := map[string][]byte{
		"golden/image.png":         img,
		"golden/image.pixels.bin":  raw(px),
		"golden/audio.wav":         wavData,
		"golden/audio.log_mel.bin": raw(mel),
		"golden/index.json":        []byte(`{"cases": [], "preprocess": {"image": {"file": "image.png", "pixels": {"file": "image.pixels.bin", "shape": [3, 64, 64]}}, "audio": {"file": "audio.wav", "log_mel": {"file": "audio.log_mel.bin", "shape": [` + strconv.Itoa(frames) + `, 40]}}}}`),
		"manifest.json":            []byte(`{"preprocessing": {"image": {"size": 64, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}, "audio": {"sample_rate": 16000, "n_fft": 400, "win_length": 400, "hop_length": 160, "n_mels": 40, "f_min": 0.0, "f_max": 8000.0, "log_offset": 1e-6, "max_seconds": 5.0}}}`),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkGoldenBundle(t, dir)
}

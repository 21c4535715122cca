package throughput

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/engine/ort"
)

// fakeThroughput is a report as RunThroughput would make it, measured on both providers.
func fakeThroughput() *Report {
	rep := &Report{Run: report.Run{Kind: "throughput", Host: report.Host{CPUs: 2}}, Bundle: "models/x/1", BundleName: "x/1", DurationS: 0.5,
		Batches: []int{1, 8}, ONNXRuntime: "1.29.0",
		Providers: []ort.ProviderStatus{{Name: ort.ProviderCPU, Usable: true, Reason: "cpu requested"},
			{Name: ort.ProviderCUDA, Usable: true, Reason: "cuda requested"}},
		Inputs: map[string]string{"text_encoder": "30 words"}}
	add := func(p ort.Provider, path Path, b int, rate float64) {
		rep.Points = append(rep.Points, Point{Case: "text_encoder", Provider: p, Path: path, Batch: b, Workers: 1,
			Calls: 10, Samples: 10 * b, Seconds: 1, SamplesPerSec: rate, MeanRows: float64(b),
			Latency: report.Summary{Count: 10, P50: 1, P90: 2, P99: 3, Max: 4}})
	}
	add(ort.ProviderCPU, PathRaw, 1, 100)
	add(ort.ProviderCPU, PathBatcher, 1, 80)
	add(ort.ProviderCPU, PathRaw, 8, 400)
	add(ort.ProviderCUDA, PathRaw, 1, 500)
	add(ort.ProviderCUDA, PathRaw, 8, 4000)
	rep.Points = append(rep.Points, Point{Case: "text_encoder", Provider: ort.ProviderCUDA, Path: PathBatcher, Batch: 8,
		Error: "out of memory"})
	rep.finish()
	return rep
}

func TestThroughputRatios(t *testing.T) {
	rep := fakeThroughput()
	if got := rep.Points[1].VsRaw; got != 0.8 {
		t.Errorf("batcher vs raw = %v, want 0.8", got)
	}
	if rep.Points[0].VsRaw != 1 {
		t.Errorf("raw vs raw = %v, want 1", rep.Points[0].VsRaw)
	}
	if len(rep.Ratios) != 2 {
		t.Fatalf("ratios %+v, want cuda/cpu at batch 1 and 8 of raw", rep.Ratios)
	}
	if r := rep.Ratios[1]; r.Batch != 8 || r.Ratio != 10 || r.CUDA != 4000 || r.CPU != 400 {
		t.Errorf("ratio %+v, want 4000/400 = 10 at batch 8", r)
	}
}

func TestThroughputJSONShape(t *testing.T) {
	dir := t.TempDir()
	path, err := fakeThroughput().WriteJSON(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != JSONFile {
		t.Errorf("wrote %s", path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"kind", "host", "onnxruntime", "bundle", "duration_s", "batches", "providers", "inputs", "points", "cuda_cpu_ratios"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("throughput.json lacks %q", k)
		}
	}
	pt := doc["points"].([]any)[1].(map[string]any)
	for _, k := range []string{"case", "provider", "path", "batch", "workers", "calls", "samples", "seconds", "samples_per_s", "latency", "mean_rows", "vs_raw"} {
		if _, ok := pt[k]; !ok {
			t.Errorf("a point lacks %q: %v", k, pt)
		}
	}
	lat := pt["latency"].(map[string]any)
	for _, k := range []string{"count", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency lacks %q", k)
		}
	}
	prov := doc["providers"].([]any)[0].(map[string]any)
	if prov["name"] != "cpu" || prov["usable"] != true {
		t.Errorf("provider entry %v", prov)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Error("temporary file left behind")
	}
}

func TestThroughputTable(t *testing.T) {
	var b bytes.Buffer
	if err := fakeThroughput().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"throughput of models/x/1 (x/1)", "provider cuda usable", "samples/s", "p99 ms", "vs raw",
		"CUDA/CPU (samples/s)", "10.0x", "error: out of memory", "text_encoder   30 words"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(out, "\n")
	var head, row string
	for i, l := range lines {
		if strings.HasPrefix(l, "case ") && strings.Contains(l, "samples/s") {
			head, row = l, lines[i+1]
			break
		}
	}
	if head == "" {
		t.Fatalf("no header line:\n%s", out)
	}
	// numbers are right-aligned under their heading
	if strings.Index(head, "samples/s")+len("samples/s") != strings.Index(row, "100.0")+len("100.0") {
		t.Errorf("samples/s column not aligned:\n%s\n%s", head, row)
	}
}

func TestThroughputTableSaysWhyCUDAIsMissing(t *testing.T) {
	rep := &Report{Graph: "g.onnx", Providers: []ort.ProviderStatus{{Name: ort.ProviderCPU, Usable: true},
		{Name: ort.ProviderCUDA, Reason: "libcublasLt.so.13: cannot open shared object file"}}}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"provider cuda UNUSABLE, not measured: libcublasLt.so.13", "CUDA/CPU: not measured"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestPlotsAreWritten(t *testing.T) {
	dir := t.TempDir()
	paths, err := fakeThroughput().WritePlots(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(raw, []byte("\x89PNG")) || len(raw) < 2000 {
			t.Errorf("%s is not a PNG picture (%d bytes)", p, len(raw))
		}
	}
}

package throughput

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/engine/ort"
)

// affine is a real graph of the engine's conformance suite: x float32[batch,4] -> y [batch,3], s [batch].
const affine = "../../engine/ort/testdata/affine.onnx"

func TestThroughputOfOneGraph(t *testing.T) {
	rep, err := Run(Config{Graph: affine, Providers: []ort.Provider{ort.ProviderCPU, ort.ProviderCUDA},
		Batches: []int{1, 4}, Duration: 40 * time.Millisecond, Runtime: ort.Options{IntraOpThreads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	cpu := slices.DeleteFunc(slices.Clone(rep.Points), func(p Point) bool { return p.Provider != ort.ProviderCPU })
	if len(cpu) != 4 {
		t.Fatalf("want raw and batcher at batch 1 and 4 on cpu, got %+v", cpu)
	}
	for _, pt := range cpu {
		if pt.Error != "" {
			t.Fatalf("%s b=%d: %s", pt.Path, pt.Batch, pt.Error)
		}
		if pt.Case != "affine" || pt.Calls < 1 || pt.SamplesPerSec <= 0 || pt.Latency.Count != pt.Calls || pt.Latency.P50 <= 0 {
			t.Errorf("point %+v", pt)
		}
		switch pt.Path {
		case PathRaw:
			if pt.Workers != 1 || pt.Samples != pt.Calls*pt.Batch || pt.MeanRows != float64(pt.Batch) || pt.Calls < 3 {
				t.Errorf("raw point %+v: one caller, batch samples a call, at least MinCalls calls", pt)
			}
		case PathBatcher:
			if pt.Workers != pt.Batch || pt.Samples != pt.Calls || pt.MeanRows < 1 || pt.MeanRows > float64(pt.Batch) || pt.VsRaw <= 0 {
				t.Errorf("batcher point %+v: batch callers, one sample a call, rows observed", pt)
			}
		default:
			t.Errorf("unexpected path %s", pt.Path)
		}
	}
	if rep.Inputs["affine"] != "x float32[4]" {
		t.Errorf("inputs %v", rep.Inputs)
	}
	var cudaStatus *ort.ProviderStatus
	for i, p := range rep.Providers {
		if p.Name == ort.ProviderCUDA {
			cudaStatus = &rep.Providers[i]
		}
	}
	if cudaStatus == nil {
		t.Fatalf("providers %+v: cuda was asked for and must be reported", rep.Providers)
	}
	if cudaStatus.Usable {
		if len(rep.Ratios) != 4 {
			t.Errorf("cuda usable: want 4 cuda/cpu ratios, got %+v", rep.Ratios)
		}
	} else {
		if cudaStatus.Reason == "" {
			t.Error("cuda unusable without a reason")
		}
		if len(rep.Points) != 4 || len(rep.Ratios) != 0 {
			t.Errorf("cuda unusable: want cpu points only, got %d points, %d ratios", len(rep.Points), len(rep.Ratios))
		}
		t.Logf("cuda unusable here: %s", cudaStatus.Reason)
	}
}

func TestThroughputShapesAndErrors(t *testing.T) {
	_, err := Run(Config{Graph: affine, Shapes: map[string][]int64{"x": {4, 4}}, Batches: []int{1}, Duration: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "rank") {
		t.Errorf("a shape of the wrong rank: err %v", err)
	}
	rep, err := Run(Config{Graph: affine, Shapes: map[string][]int64{"x": {5}}, Batches: []int{2},
		Paths: []Path{PathRaw}, Duration: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Points) != 1 || !strings.Contains(rep.Points[0].Error, "shape") {
		t.Errorf("a fixed dimension overridden wrongly must fail the point with ONNX Runtime's input check, got %+v", rep.Points)
	}
	if _, err := Run(Config{Batches: []int{1}}); err == nil {
		t.Error("neither bundle nor graph: want an error")
	}
	if _, err := Run(Config{Graph: affine, Batches: []int{0}}); err == nil {
		t.Error("batch 0: want an error")
	}
	if _, err := Run(Config{Graph: affine, Cases: []string{"nope"}, Batches: []int{1}}); err == nil ||
		!strings.Contains(err.Error(), "affine") {
		t.Errorf("unknown case: err %v, want the list of cases", err)
	}
	if _, err := Run(Config{Graph: affine, Cases: []string{"affine", "nope"}, Batches: []int{1}}); err == nil {
		t.Error("one unknown case among known ones: want an error")
	}
	if _, err := ParsePaths("raw,gpu"); err == nil {
		t.Error("ParsePaths accepted an unknown path")
	}
	if err := report.BundleReady(t.TempDir()); err == nil || !strings.Contains(err.Error(), "manifest.json") {
		t.Errorf("BundleReady of an empty folder: %v", err)
	}
}

// testBundle is the bundle of the bundle tests: $LLM4REC_TEST_BUNDLE, else the default
// bundle. The test skips, saying what is missing, when it is absent.
func testBundle(t *testing.T) string {
	dir := os.Getenv("LLM4REC_TEST_BUNDLE")
	if dir == "" {
		dir = filepath.Join("..", "..", "models", "movielens-100k", "1")
	}
	if err := report.BundleReady(dir); err != nil {
		t.Skipf("no model bundle, bundle throughput not measured: %v", err)
	}
	return dir
}

// TestThroughputOfBundle runs the quick throughput bench over every graph and the pipeline at
// batch 1 and 8, 200 ms a point, on CPU (and CUDA where usable).
func TestThroughputOfBundle(t *testing.T) {
	dir := testBundle(t)
	if testing.Short() {
		t.Skip("short mode: the bundle bench takes about 20 s")
	}
	rep, err := Run(Config{Bundle: dir, Providers: []ort.Provider{ort.ProviderCPU, ort.ProviderCUDA},
		Batches: []int{1, 8}, Duration: 200 * time.Millisecond, MinCalls: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]Path{
		"text_encoder": AllPaths, "image_encoder": AllPaths, "audio_encoder": AllPaths,
		"fusion": {PathRaw, PathBatcher}, "generator": {PathRaw, PathBatcher}, CasePipeline: {PathRaw, PathEngine},
	}
	got := map[string][]Path{}
	for _, pt := range rep.Points {
		if pt.Error != "" {
			t.Errorf("%s %s %s b=%d: %s", pt.Provider, pt.Case, pt.Path, pt.Batch, pt.Error)
			continue
		}
		if pt.SamplesPerSec <= 0 || pt.Calls == 0 {
			t.Errorf("%s %s %s b=%d measured nothing", pt.Provider, pt.Case, pt.Path, pt.Batch)
		}
		if pt.Provider == ort.ProviderCPU && pt.Batch == 8 {
			got[pt.Case] = append(got[pt.Case], pt.Path)
		}
	}
	for c, paths := range want {
		if !slices.Equal(got[c], paths) {
			t.Errorf("%s: measured paths %v, want %v", c, got[c], paths)
		}
	}
	if len(rep.Inputs) != 6 || rep.BundleName == "" {
		t.Errorf("inputs %v, bundle name %q", rep.Inputs, rep.BundleName)
	}
	if !strings.Contains(rep.Inputs["text_encoder"], "tokens") {
		t.Errorf("text input %q does not say its token count", rep.Inputs["text_encoder"])
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Points) != len(rep.Points) {
		t.Errorf("round trip: %v", errors.Join(err))
	}
	var sb strings.Builder
	if err := rep.WriteTable(&sb); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", sb.String())
}

func TestParseShape(t *testing.T) {
	shapes := map[string][]int64{}
	if err := ParseShape("log_mel=300x64", shapes); err != nil || !slices.Equal(shapes["log_mel"], []int64{300, 64}) {
		t.Errorf("ParseShape: %v %v", shapes, err)
	}
	if err := ParseShape("lengths=", shapes); err != nil || shapes["lengths"] == nil || len(shapes["lengths"]) != 0 {
		t.Errorf("rank-1 input: %v %v", shapes, err)
	}
	for _, bad := range []string{"x", "=3", "x=3xy", "x=-1"} {
		if err := ParseShape(bad, shapes); err == nil {
			t.Errorf("ParseShape(%q) accepted", bad)
		}
	}
}

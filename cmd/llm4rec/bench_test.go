package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchRun runs `llm4rec bench ARGS...` and returns its exit status and outputs.
func benchRun(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	rc := run(append([]string{"bench"}, args...), &out, &errb)
	return rc, out.String(), errb.String()
}

// wrote checks that dir holds the named files and that the PNGs among them are pictures.
func wrote(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		raw, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || (strings.HasSuffix(n, ".png") && !bytes.HasPrefix(raw, []byte("\x89PNG"))) {
			t.Errorf("%s: %d bytes, %v", n, len(raw), err)
		}
	}
}

func TestBenchThroughputOfOneGraph(t *testing.T) {
	dir := t.TempDir()
	graph := "../../engine/ort/testdata/affine.onnx"
	rc, out, errs := benchRun("throughput", "--onnx", graph, "--providers", "cpu", "--batches", "1,2", "--duration", "20ms",
		"--intra-threads", "1", "--out", dir, "--plot")
	if rc != 0 || !strings.Contains(out, "throughput of "+graph) || !strings.Contains(errs, "bench: [4/4] cpu affine") {
		t.Fatalf("rc %d\nstdout %s\nstderr %s", rc, out, errs)
	}
	wrote(t, dir, "throughput.json", "throughput.png", "throughput-latency.png")
	rc, out, errs = benchRun("throughput", "--onnx", graph, "--providers", "cpu", "--batches", "1", "--duration", "10ms",
		"--paths", "raw", "--json", "--quiet")
	var rep struct {
		Kind   string `json:"kind"`
		Points []struct {
			Path string `json:"path"`
		} `json:"points"`
	}
	if rc != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Kind != "throughput" || len(rep.Points) != 1 || errs != "" {
		t.Errorf("--json --quiet: rc %d, report %+v\nstdout %s\nstderr %s", rc, rep, out, errs)
	}
}

func TestBenchHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"items":[]}`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	rc, out, errs := benchRun("http", "--url", srv.URL, "--concurrency", "2", "--duration", "200ms", "--bundle", "",
		"--catalog-size", "20", "--mix", "history=1,query=1", "--feedback-share", "0.5", "--quiet", "--out", dir, "--plot")
	if rc != 0 || !strings.Contains(out, "closed-loop with 2 callers") || !strings.Contains(out, "feedback") {
		t.Fatalf("rc %d\nstdout %s\nstderr %s", rc, out, errs)
	}
	wrote(t, dir, "http.json", "http.png")
	srv.Close()
	if rc, _, errs := benchRun("http", "--url", srv.URL, "--duration", "100ms", "--bundle", "", "--quiet"); rc != 1 ||
		!strings.Contains(errs, "no request succeeded") {
		t.Errorf("no server: rc %d, stderr %s", rc, errs)
	}
}

func TestBenchQualityAndOnline(t *testing.T) {
	bundle := defaultBundle(t)
	data := filepath.Join(os.Getenv("LLM4REC_DATA"), "ml-100k")
	if _, err := os.Stat(filepath.Join(data, "u.data")); err != nil {
		t.Skipf("no MovieLens-100K data (set LLM4REC_DATA to the folder holding ml-100k/): %v", err)
	}
	dir := t.TempDir()
	rc, out, errs := benchRun("quality", "--bundle", bundle, "--data", data, "--alphas", "0", "--users", "40", "--no-steering",
		"--provider", "cpu", "--out", dir, "--plot")
	if rc != 0 || !strings.Contains(out, "most_popular") || !strings.Contains(out, "item_knn") || !strings.Contains(errs, "quality: ") {
		t.Fatalf("quality: rc %d\nstdout %s\nstderr %s", rc, out, errs)
	}
	wrote(t, dir, "quality.json", "quality.png")
	rc, out, errs = benchRun("online", "--bundle", bundle, "--data", data, "--until", "0.8", "--events", "60", "--val-users", "20",
		"--window", "20", "--provider", "cpu", "--quiet", "--out", dir, "--plot")
	if rc != 0 || !strings.Contains(out, "stream: 60 events") || !strings.Contains(out, "live_state") {
		t.Fatalf("online: rc %d\nstdout %s\nstderr %s", rc, out, errs)
	}
	wrote(t, dir, "online.json", "online.png")
}

func TestBenchFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		rc   int
		says string
	}{
		{nil, 2, "usage: llm4rec bench"},
		{[]string{"nope"}, 2, `unknown bench "nope"`},
		{[]string{"throughput", "--plot"}, 2, "give --out DIR"},
		{[]string{"throughput", "extra"}, 2, "unexpected arguments"},
		{[]string{"throughput", "--onnx", "x.onnx", "--batches", "0"}, 2, "--batches"},
		{[]string{"throughput", "--onnx", "x.onnx", "--paths", "gpu"}, 2, "--paths"},
		{[]string{"throughput", "--onnx", "x.onnx", "--providers", "tpu"}, 2, "want cpu or cuda"},
		{[]string{"throughput", "--bundle", "/nonexistent"}, 1, "no model bundle"},
		{[]string{"http", "--mix", "video=1"}, 2, "--mix"},
		{[]string{"quality", "--alphas", "11"}, 2, "--alphas"},
		{[]string{"quality", "--bundle", "/nonexistent", "--provider", "cpu"}, 1, "no model bundle"},
		{[]string{"online", "--provider", "tpu"}, 2, "tpu"},
		{[]string{"online", "--retrained", "dir@soon", "--provider", "cpu"}, 2, "--retrained"},
		{[]string{"online", "--rate", "2", "--penalty", "0.5", "--provider", "cpu"}, 2, "--rate"},
	} {
		rc, _, errs := benchRun(c.args...)
		if rc != c.rc || !strings.Contains(errs, c.says) {
			t.Errorf("bench %q: rc %d, stderr %q; want %d and %q", c.args, rc, errs, c.rc, c.says)
		}
	}
}

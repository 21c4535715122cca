package server

// Tests on the real bundle through ONNX Runtime: what the fake engine of the handler tests
// cannot show (the model's answers, the engine's own request checks, graph runs in the
// metrics, reloading a real bundle). The bundle is loaded once for the package. Without its
// weights these tests skip, unless LLM4REC_REQUIRE_BUNDLE=1, where they fail.

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/server/internal/natstest"
)

func TestMain(m *testing.M) {
	if os.Getenv(replicaChildEnv) != "" {
		os.Exit(replicaChild()) // a replica process of the cluster tests (cluster_test.go)
	}
	if os.Getenv(natstest.ChildEnv) != "" {
		os.Exit(natstest.RunChild()) // a NATS server process of the cluster tests
	}
	code := m.Run()
	stopClusters() // the NATS servers of the cluster tests (cluster_test.go)
	if shared.srv != nil {
		shared.srv.client.CloseIdleConnections()
		shared.srv.Shutdown()
		shared.rt.Close()
		os.RemoveAll(shared.dataDir)
	}
	os.Exit(code)
}

// shared is the one server on the real bundle, started by the first test that asks for it.
var shared struct {
	once    sync.Once
	err     error
	rt      *ort.Runtime
	srv     *testServer
	dataDir string
}

// bundleDir is the bundle under test: $LLM4REC_TEST_BUNDLE, else the committed default bundle
// with its fetched text-encoder weights.
func bundleDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("LLM4REC_TEST_BUNDLE")
	if dir == "" {
		dir, _ = filepath.Abs("../models/movielens-100k/1")
	}
	for _, f := range []string{"manifest.json", "text_encoder.weights"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			if os.Getenv("LLM4REC_REQUIRE_BUNDLE") == "1" {
				t.Fatalf("bundle %s not installed (%v) and LLM4REC_REQUIRE_BUNDLE=1: run `make weights`", dir, err)
			}
			t.Skipf("bundle %s not installed (%v): run `make weights`, or set LLM4REC_REQUIRE_BUNDLE=1 to fail here", dir, err)
		}
	}
	return dir
}

// bundleServer is the shared server on the real bundle (CPU), for test t.
func bundleServer(t testing.TB) *testServer {
	t.Helper()
	dir := bundleDir(t)
	shared.once.Do(func() {
		if shared.dataDir, shared.err = os.MkdirTemp("", "llm4rec-server-test-"); shared.err != nil {
			return
		}
		if shared.rt, shared.err = ort.Open(ort.Options{Provider: ort.ProviderCPU}); shared.err != nil {
			return
		}
		s, err := New(Config{Bundle: dir, DataDir: shared.dataDir}, shared.rt, nil)
		if err != nil {
			shared.err = err
			return
		}
		shared.srv = serve(t, s)
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	ts := *shared.srv
	ts.t = t
	return &ts
}

// The model's recommendations through the API: seen items excluded, feedback changes the
// next list at once and moves live popularity, and every stage's graph run reaches the
// metrics with its execution provider.
func TestBundleEndToEnd(t *testing.T) {
	ts := bundleServer(t)
	cat := ts.catalog()
	hist := []string{cat[0], cat[9], cat[19]}
	r := ts.do("POST", "/v1/recommend", "", map[string]any{"history": hist, "k": 5, "explain": true})
	if r.status != 200 || len(items(r)) != 5 || r.body["provider"] != "cpu" {
		t.Fatalf("recommend: %d %s", r.status, r.raw)
	}
	for _, id := range items(r) {
		if slices.Contains(hist, id) {
			t.Fatalf("seen item %s recommended", id)
		}
	}
	// explanations: one sentence each, or up to three when detailed, each with its kind
	for explain, most := range map[any]int{true: 1, "detailed": 3} {
		r := ts.do("POST", "/v1/recommend", "", map[string]any{"history": hist, "k": 5, "explain": explain, "query": "a comedy"})
		if r.status != 200 {
			t.Fatalf("explain %v: %d %s", explain, r.status, r.raw)
		}
		for _, it := range r.body["items"].([]any) {
			ex, _ := it.(map[string]any)["explanations"].([]any)
			if len(ex) < 1 || len(ex) > most {
				t.Fatalf("explain %v: %d explanations: %v", explain, len(ex), it)
			}
			for _, x := range ex {
				if x := x.(map[string]any); x["kind"] == "" || x["text"] == "" {
					t.Fatalf("explain %v: %v", explain, x)
				}
			}
		}
	}

	// the server outlives a test run (-count): a user and event ids of this run's own
	user := fmt.Sprint("e2e-", time.Now().UnixNano())
	liked := []string{cat[5], cat[11], cat[17], cat[23], cat[29]}
	before := ts.do("POST", "/v1/recommend", "", map[string]any{"history": []string{cat[1]}, "user_id": user, "k": 10})
	var events []map[string]any
	for i, id := range liked {
		events = append(events, map[string]any{"event_id": fmt.Sprint(user, "-", i), "user_id": user, "item_id": id, "type": "like", "timestamp": 1_700_000_000 + i})
	}
	if r := ts.do("POST", "/v1/feedback", "", map[string]any{"events": events}); r.status != 200 || r.body["accepted"] != 5.0 {
		t.Fatalf("feedback: %d %s", r.status, r.raw)
	}
	after := ts.do("POST", "/v1/recommend", "", map[string]any{"history": []string{cat[1]}, "user_id": user, "k": 10})
	if before.status != 200 || after.status != 200 {
		t.Fatalf("%d %d", before.status, after.status)
	}
	if fmt.Sprint(items(before)) == fmt.Sprint(items(after)) {
		t.Fatalf("recommendations did not change after feedback: %v", items(after))
	}
	for _, id := range items(after) {
		if slices.Contains(liked, id) {
			t.Fatalf("item %s from the live history recommended", id)
		}
	}
	if item := ts.do("GET", "/v1/items/"+liked[0], "", nil); item.body["interactions"].(float64) < 1 {
		t.Fatalf("item stats not updated: %s", item.raw)
	}

	r = ts.do("GET", "/metrics", "", nil)
	for _, series := range []string{`llm4rec_http_requests_total{route="recommend",status="200"}`, "llm4rec_batch_queue_depth",
		`llm4rec_batch_size_bucket{graph="fusion"`, `llm4rec_onnx_run_seconds_bucket{graph="fusion",provider="cpu"`,
		`llm4rec_onnx_run_seconds_bucket{graph="generator",provider="cpu"`, "llm4rec_embedding_cache_hits_total",
		"llm4rec_feedback_events_total", `llm4rec_batch_queue_wait_seconds_bucket{graph="fusion"`} {
		if !strings.Contains(string(r.raw), series) {
			t.Errorf("metrics lack %s", series)
		}
	}
}

// The engine's own request checks answer 400 through the API (the handler tests' fake
// engine makes the same checks; this holds it to the real one).
func TestBundleRequestErrors(t *testing.T) {
	ts := bundleServer(t)
	cat := ts.catalog()
	for _, c := range []struct {
		name string
		body map[string]any
	}{
		{"unknown item", map[string]any{"history": []string{"no-such-item"}}},
		{"k past limit", map[string]any{"history": cat[:2], "k": 101}},
		{"negative alpha", map[string]any{"history": cat[:2], "ips_alpha": -1}},
		{"bad mode", map[string]any{"history": cat[:2], "mode": "beam"}},
		{"image garbage", map[string]any{"image": base64.StdEncoding.EncodeToString([]byte("GIF89a....."))}},
		{"audio garbage", map[string]any{"audio": base64.StdEncoding.EncodeToString([]byte("RIFF\x00\x00\x00\x00WAVE"))}},
	} {
		if r := ts.do("POST", "/v1/recommend", "", c.body); r.status != 400 || r.errCode() != "bad_request" {
			t.Errorf("%s: %d %s, want 400 bad_request", c.name, r.status, r.raw)
		}
	}
	// a 6000x5999 16-bit RGBA PNG is under the pixel limit, but decoding it would take about
	// 430 MiB: refused from its header, before any decoding
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], 6000)
	binary.BigEndian.PutUint32(ihdr[4:], 5999)
	ihdr[8], ihdr[9] = 16, 6
	chunk := append([]byte("IHDR"), ihdr...)
	png := binary.BigEndian.AppendUint32([]byte("\x89PNG\r\n\x1a\n"), 13)
	png = binary.BigEndian.AppendUint32(append(png, chunk...), crc32.ChecksumIEEE(chunk))
	r := ts.do("POST", "/v1/recommend", "", map[string]any{"image": base64.StdEncoding.EncodeToString(png)})
	if r.status != 413 || r.errCode() != "too_large" || !strings.Contains(string(r.raw), "MiB") {
		t.Errorf("16-bit 6000x5999 PNG: %d %s, want 413 naming the decode memory", r.status, r.raw)
	}
}

// 1000 concurrent recommends through the real batchers and graphs all succeed.
func TestBundleConcurrentRecommends(t *testing.T) {
	concurrentRecommends(t, bundleServer(t))
}

// Reloading the real bundle under load drops no request; a broken bundle leaves it serving.
func TestBundleReloadUnderLoad(t *testing.T) {
	reloadUnderLoad(t, bundleServer(t))
}

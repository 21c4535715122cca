package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/server/feedback"
)

type testServer struct {
	*Server
	url     string
	t       testing.TB
	client  *http.Client
	backend *fakeBackend // nil on the real bundle
}

// start serves the fake bundle (no ONNX Runtime) on a fresh data directory, with cfg edited
// by edit, until the test ends.
func start(t testing.TB, edit func(*Config)) *testServer {
	t.Helper()
	cfg := Config{Bundle: fakeBundle, DataDir: t.TempDir()}
	if edit != nil {
		edit(&cfg)
	}
	backend := &fakeBackend{}
	s, err := NewWithBackend(cfg, backend, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, s)
	ts.backend = backend
	t.Cleanup(func() {
		ts.client.CloseIdleConnections()
		s.Shutdown()
	})
	return ts
}

// serve answers HTTP for s on a loopback port. Its client keeps a connection per concurrent
// caller: with the default two, concurrent tests open a connection per request and can
// overflow the listen backlog, and a dropped SYN costs a second.
func serve(t testing.TB, s *Server) *testServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	return &testServer{Server: s, url: "http://" + ln.Addr().String(), t: t, client: client}
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (ts *testServer) do(method, path, key string, body any) reply {
	ts.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, ts.url+path, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	json.Unmarshal(raw, &r.body)
	return r
}

// doHead sends a request's head announcing a body of contentLength bytes, sends no body, and
// reads the answer.
func (ts *testServer) doHead(method, path string, contentLength int) reply {
	ts.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		ts.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", method, path, contentLength)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	json.Unmarshal(raw, &r.body)
	return r
}

// catalog returns the served bundle's item ids in vocabulary order.
func (ts *testServer) catalog() []string {
	l := ts.engines.acquire()
	defer l.release()
	var ids []string
	for _, it := range l.eng.Items() {
		ids = append(ids, it.ID)
	}
	return ids
}

func (r reply) errCode() string {
	if e, ok := r.body["error"].(map[string]any); ok {
		return fmt.Sprint(e["code"])
	}
	return ""
}

func items(r reply) []string {
	var out []string
	list, _ := r.body["items"].([]any)
	for _, it := range list {
		out = append(out, fmt.Sprint(it.(map[string]any)["item_id"]))
	}
	return out
}

func TestEndpoints(t *testing.T) {
	ts := start(t, nil)
	cat := ts.catalog()
	hist := []string{cat[0], cat[9], cat[19]}
	r := ts.do("POST", "/v1/recommend", "", map[string]any{"history": hist, "k": 5, "explain": true})
	if r.status != 200 || len(items(r)) != 5 {
		t.Fatalf("recommend: %d %s", r.status, r.raw)
	}
	for _, id := range items(r) {
		if slices.Contains(hist, id) {
			t.Fatalf("seen item %s recommended", id)
		}
	}
	if r = ts.do("GET", "/v1/items/"+cat[9], "", nil); r.status != 200 || r.body["title"] == "" {
		t.Fatalf("item: %d %s", r.status, r.raw)
	}
	if r = ts.do("GET", "/v1/items/999999", "", nil); r.status != 404 || r.errCode() != "not_found" {
		t.Fatalf("unknown item: %d %s", r.status, r.raw)
	}
	ev := map[string]any{"event_id": "e1", "user_id": "u1", "item_id": cat[9], "type": "click", "timestamp": time.Now().Unix()}
	if r = ts.do("POST", "/v1/feedback", "", ev); r.status != 200 || r.body["accepted"] != 1.0 {
		t.Fatalf("feedback: %d %s", r.status, r.raw)
	}
	if r = ts.do("POST", "/v1/feedback", "", ev); r.status != 200 || r.body["duplicates"] != 1.0 {
		t.Fatalf("retry: %d %s", r.status, r.raw)
	}
	if r = ts.do("GET", "/v1/users/u1", "", nil); r.status != 200 || fmt.Sprint(r.body["history"]) != "["+cat[9]+"]" {
		t.Fatalf("user: %d %s", r.status, r.raw)
	}
	if r = ts.do("GET", "/v1/users/nobody", "", nil); r.status != 404 {
		t.Fatalf("unknown user: %d", r.status)
	}
	if r = ts.do("GET", "/healthz/live", "", nil); r.status != 200 {
		t.Fatalf("live: %d", r.status)
	}
	if r = ts.do("GET", "/healthz/ready", "", nil); r.status != 200 {
		t.Fatalf("ready: %d %s", r.status, r.raw)
	}
	r = ts.do("GET", "/metrics", "", nil)
	for _, series := range []string{`llm4rec_http_requests_total{route="recommend",status="200"} 1`, "llm4rec_http_request_duration_seconds_bucket",
		"llm4rec_batch_queue_depth", "llm4rec_batch_size_bucket", `llm4rec_onnx_run_seconds_bucket{graph="fusion",provider="cpu"`,
		"llm4rec_embedding_cache_hits_total", "llm4rec_feedback_log_lag_events", "llm4rec_feedback_events_total 1"} {
		if !strings.Contains(string(r.raw), series) {
			t.Errorf("metrics lack %s", series)
		}
	}
	if r = ts.do("GET", "/nope", "", nil); r.status != 404 || r.errCode() != "not_found" {
		t.Fatalf("unknown route: %d %s", r.status, r.raw)
	}
	if r = ts.do("GET", "/v1/recommend", "", nil); r.status != 405 {
		t.Fatalf("wrong method: %d", r.status)
	}
}

// Feedback changes the next recommendation at once: the user's live history is used.
func TestFeedbackChangesNextRecommendation(t *testing.T) {
	ts := start(t, nil)
	cat := ts.catalog()
	liked := []string{cat[5], cat[11], cat[17], cat[23], cat[29]}
	before := ts.do("POST", "/v1/recommend", "", map[string]any{"history": []string{cat[1]}, "user_id": "u7", "k": 10})
	var events []map[string]any
	for i, id := range liked {
		events = append(events, map[string]any{"event_id": fmt.Sprint("u7-", i), "user_id": "u7", "item_id": id, "type": "like", "timestamp": 1_700_000_000 + i})
	}
	if r := ts.do("POST", "/v1/feedback", "", map[string]any{"events": events}); r.status != 200 || r.body["accepted"] != 5.0 {
		t.Fatalf("feedback: %d %s", r.status, r.raw)
	}
	after := ts.do("POST", "/v1/recommend", "", map[string]any{"history": []string{cat[1]}, "user_id": "u7", "k": 10})
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
	// popularity is live too
	item := ts.do("GET", "/v1/items/"+liked[0], "", nil)
	if item.body["interactions"].(float64) < 1 {
		t.Fatalf("item stats not updated: %s", item.raw)
	}
}

func TestErrorsAndLimits(t *testing.T) {
	ts0 := start(t, nil)
	cat := ts0.catalog()
	ts := start(t, func(c *Config) {
		c.MaxBodyBytes = 64 << 10
		c.MaxHistory = 20
		c.MaxK = 30
		c.MaxFeedbackBatch = 5
		c.MaxImageBytes = 2048
		c.MaxAudioBytes = 2048
		c.MaxJSONDepth = 4
	})
	hist := func(n int) []string {
		h := make([]string, n)
		for i := range h {
			h[i] = cat[i%len(cat)]
		}
		return h
	}
	events := func(n int, prefix string) []map[string]any {
		out := make([]map[string]any, n)
		for i := range out {
			out[i] = map[string]any{"event_id": fmt.Sprint(prefix, i), "user_id": "lim", "item_id": cat[i], "type": "view", "timestamp": 1700000000 + i}
		}
		return out
	}
	cases := []struct {
		name   string
		path   string
		body   any
		status int
		code   string
	}{
		{"history at limit", "/v1/recommend", map[string]any{"history": hist(20)}, 200, ""},
		{"history past limit", "/v1/recommend", map[string]any{"history": hist(21)}, 400, "bad_request"},
		{"k at limit", "/v1/recommend", map[string]any{"history": hist(2), "k": 30}, 200, ""},
		{"k past limit", "/v1/recommend", map[string]any{"history": hist(2), "k": 31}, 400, "bad_request"},
		{"empty body", "/v1/recommend", "", 400, "bad_request"},
		{"not json", "/v1/recommend", "{nope", 400, "bad_request"},
		{"nothing to go on", "/v1/recommend", map[string]any{"k": 3}, 400, "bad_request"},
		{"unknown item", "/v1/recommend", map[string]any{"history": []string{"no-such-item"}}, 400, "bad_request"},
		{"negative alpha", "/v1/recommend", map[string]any{"history": hist(2), "ips_alpha": -1}, 400, "bad_request"},
		{"bad mode", "/v1/recommend", map[string]any{"history": hist(2), "mode": "beam"}, 400, "bad_request"},
		{"image past limit", "/v1/recommend", map[string]any{"image": base64.StdEncoding.EncodeToString(make([]byte, 2049))}, 413, "too_large"},
		{"image not base64", "/v1/recommend", map[string]any{"image": "!!!"}, 400, "bad_request"},
		{"image garbage", "/v1/recommend", map[string]any{"image": base64.StdEncoding.EncodeToString([]byte("GIF89a....."))}, 400, "bad_request"},
		{"audio garbage", "/v1/recommend", map[string]any{"audio": base64.StdEncoding.EncodeToString([]byte("RIFF\x00\x00\x00\x00WAVE"))}, 400, "bad_request"},
		{"audio past limit", "/v1/recommend", map[string]any{"audio": base64.StdEncoding.EncodeToString(make([]byte, 4096))}, 413, "too_large"},
		{"feedback batch at limit", "/v1/feedback", map[string]any{"events": events(5, "lim")}, 200, ""},
		{"feedback batch past limit", "/v1/feedback", map[string]any{"events": events(6, "lim2")}, 413, "too_large"},
		{"feedback missing field", "/v1/feedback", map[string]any{"event_id": "x", "user_id": "u", "type": "click", "timestamp": 1700000000}, 400, "invalid_event"},
		{"feedback bad type", "/v1/feedback", map[string]any{"event_id": "x", "user_id": "u", "item_id": cat[0], "type": "teleport", "timestamp": 1700000000}, 400, "invalid_event"},
		{"feedback id at 128 bytes", "/v1/feedback", map[string]any{"event_id": strings.Repeat("e", 128), "user_id": "u", "item_id": cat[0], "type": "click", "timestamp": 1700000000}, 200, ""},
		{"feedback id past 128 bytes", "/v1/feedback", map[string]any{"event_id": strings.Repeat("e", 129), "user_id": "u", "item_id": cat[0], "type": "click", "timestamp": 1700000000}, 400, "invalid_event"},
		{"feedback empty batch", "/v1/feedback", map[string]any{"events": []any{}}, 400, "bad_request"},
	}
	for _, c := range cases {
		r := ts.do("POST", c.path, "", c.body)
		if r.status != c.status || (c.code != "" && r.errCode() != c.code) {
			t.Errorf("%s: %d %s, want %d %s", c.name, r.status, r.raw, c.status, c.code)
		}
		if r.status >= 400 && r.status != 413 && r.errCode() == "" {
			t.Errorf("%s: error body not {error: {code, message}}: %s", c.name, r.raw)
		}
	}
	// A body past the limit is refused from its Content-Length, before it is read. Only the
	// head is sent: a client still writing the body when the server answers and closes can
	// meet a reset instead of the answer.
	if r := ts.doHead("POST", "/v1/recommend", 70<<10); r.status != 413 || r.errCode() != "too_large" {
		t.Errorf("body past limit: %d %s, want 413 too_large", r.status, r.raw)
	}
	// JSON depth: 4 levels pass the depth check (and fail later for the unknown field), 5 do not
	if r := ts.do("POST", "/v1/recommend", "", `{"history": ["x"], "extra": [[[]]]}`); r.status != 400 || strings.Contains(string(r.raw), "nested deeper") || !strings.Contains(string(r.raw), "unknown field") {
		t.Errorf("depth at limit: %d %s", r.status, r.raw)
	}
	if r := ts.do("POST", "/v1/recommend", "", `{"history": [[[[["x"]]]]]}`); r.status != 400 || !strings.Contains(string(r.raw), "nested deeper than 4") {
		t.Errorf("depth past limit: %d %s", r.status, r.raw)
	}
	// a conflicting retry: same event_id, other content
	e := map[string]any{"event_id": "c1", "user_id": "u", "item_id": cat[0], "type": "click", "timestamp": 1700000000}
	ts.do("POST", "/v1/feedback", "", e)
	e["item_id"] = cat[1]
	if r := ts.do("POST", "/v1/feedback", "", e); r.status != 409 {
		t.Errorf("conflicting event: %d %s", r.status, r.raw)
	}
}

func TestAuthScopes(t *testing.T) {
	ts := start(t, func(c *Config) { c.APIKey, c.AdminKey = "inference-key", "admin-key" })
	body := map[string]any{"history": []string{ts.catalog()[0]}, "k": 2}
	if r := ts.do("POST", "/v1/recommend", "", body); r.status != 401 || r.errCode() != "unauthorized" {
		t.Fatalf("no key: %d", r.status)
	}
	if r := ts.do("POST", "/v1/recommend", "wrong", body); r.status != 401 {
		t.Fatalf("wrong key: %d", r.status)
	}
	if r := ts.do("POST", "/v1/recommend", "inference-key", body); r.status != 200 {
		t.Fatalf("inference key: %d %s", r.status, r.raw)
	}
	if r := ts.do("POST", "/v1/recommend", "admin-key", body); r.status != 200 {
		t.Fatalf("admin key on inference route: %d", r.status)
	}
	if r := ts.do("POST", "/admin/models/reload", "inference-key", nil); r.status != 403 || r.errCode() != "forbidden" {
		t.Fatalf("inference key on admin route: %d", r.status)
	}
	if r := ts.do("POST", "/admin/models/reload", "", nil); r.status != 401 {
		t.Fatalf("no key on admin route: %d", r.status)
	}
	for _, p := range []string{"/healthz/live", "/healthz/ready", "/metrics"} {
		if r := ts.do("GET", p, "", nil); r.status != 200 {
			t.Fatalf("%s without key: %d", p, r.status)
		}
	}
	closed := start(t, func(c *Config) { c.APIKey, c.AdminKey = "k1", "k2"; f := false; c.OpenHealth = &f })
	if r := closed.do("GET", "/metrics", "", nil); r.status != 401 {
		t.Fatalf("closed health without key: %d", r.status)
	}
}

func TestConcurrentRecommends(t *testing.T) {
	concurrentRecommends(t, start(t, nil))
}

// concurrentRecommends sends 1000 recommends, 64 at a time, a tenth with a query: every one
// must succeed.
func concurrentRecommends(t *testing.T, ts *testServer) {
	cat := ts.catalog()
	var wg sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 64)
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			body := map[string]any{"history": []string{cat[i%len(cat)], cat[(i*7)%len(cat)]}, "k": 5}
			if i%10 == 0 {
				body["query"] = fmt.Sprint("space adventure ", i%5)
			}
			raw, _ := json.Marshal(body)
			resp, err := ts.client.Post(ts.url+"/v1/recommend", "application/json", bytes.NewReader(raw))
			if err != nil {
				failed.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of 1000 concurrent recommends failed", failed.Load())
	}
}

func TestReloadUnderLoad(t *testing.T) {
	ts := start(t, nil)
	old := ts.engines.acquire()
	old.release()
	reloadUnderLoad(t, ts)
	if n := ts.backend.opened.Load(); n != 2 {
		t.Fatalf("%d bundles opened, want 2 (start and reload)", n)
	}
	// the replaced engine is closed once its last request is done
	deadline := time.Now().Add(5 * time.Second)
	for !old.eng.(*fakeEngine).closed.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the replaced engine was never closed")
		}
		time.Sleep(time.Millisecond)
	}
	cur := ts.engines.acquire()
	defer cur.release()
	if cur.eng.(*fakeEngine).closed.Load() {
		t.Fatal("the serving engine is closed")
	}
}

// reloadUnderLoad reloads the current bundle, then a broken one, while 8 clients send
// recommends: no request fails, and the broken bundle leaves the current one serving.
func reloadUnderLoad(t *testing.T, ts *testServer) {
	cat := ts.catalog()
	reqBody := fmt.Sprintf(`{"history":[%q,%q],"k":3}`, cat[0], cat[1])
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := ts.client.Post(ts.url+"/v1/recommend", "application/json", strings.NewReader(reqBody))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	r := ts.do("POST", "/admin/models/reload", "", nil)
	if r.status != 200 {
		t.Fatalf("reload: %d %s", r.status, r.raw)
	}
	// a bundle that fails validation leaves the old one serving, and the reply says why
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "manifest.json"), []byte(`{"format_version": 99}`), 0o644)
	r = ts.do("POST", "/admin/models/reload", "", map[string]any{"bundle": bad})
	if r.status != 422 || !strings.Contains(string(r.raw), "previous model keeps serving") || !strings.Contains(string(r.raw), "format_version") {
		t.Fatalf("bad reload: %d %s", r.status, r.raw)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("during reload: %d ok, %d failed", ok.Load(), failed.Load())
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	var spec struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openAPISpec, &spec); err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Defaults()}
	seen := map[string]bool{}
	for _, r := range s.routes() {
		p := r.path
		if len(p) > 1 && strings.HasSuffix(p, "/") {
			p += "{id}"
		}
		ops, ok := spec.Paths[p]
		if !ok {
			t.Errorf("route %s %s missing from openapi.json", r.method, p)
			continue
		}
		if _, ok := ops[strings.ToLower(r.method)]; !ok {
			t.Errorf("openapi.json has %s but not its %s operation", p, r.method)
		}
		seen[p+" "+strings.ToLower(r.method)] = true
	}
	for p, ops := range spec.Paths {
		for m := range ops {
			if !seen[p+" "+m] {
				t.Errorf("openapi.json documents %s %s, which the server does not route", m, p)
			}
		}
	}
	// the request schema names exactly the fields the server decodes
	var full map[string]any
	json.Unmarshal(openAPISpec, &full)
	props := full["components"].(map[string]any)["schemas"].(map[string]any)["RecommendRequest"].(map[string]any)["properties"].(map[string]any)
	var fields []string
	raw, _ := json.Marshal(RecommendRequest{UserID: "x", History: []string{"1"}, Query: "q", Image: "i", Audio: "a", K: new(int),
		ExcludeSeen: new(bool), IPSAlpha: new(float64), Debias: Debias{Off: true}, Explain: Explain{On: true}, Mode: "m"})
	var m map[string]any
	json.Unmarshal(raw, &m)
	for f := range m {
		fields = append(fields, f)
		if _, ok := props[f]; !ok {
			t.Errorf("request field %s not in the schema", f)
		}
	}
	if len(fields) != len(props) {
		t.Errorf("schema has %d request fields, the server %d", len(props), len(fields))
	}
}

func TestExplainField(t *testing.T) {
	for in, want := range map[string]Explain{`true`: {On: true}, `false`: {}, `null`: {}, `"detailed"`: {On: true, Detailed: true}} {
		var got Explain
		if err := json.Unmarshal([]byte(in), &got); err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", in, got, err, want)
		}
		if out, _ := json.Marshal(want); in != "null" && string(out) != in {
			t.Errorf("%+v marshals to %s, want %s", want, out, in)
		}
	}
	for _, in := range []string{`"yes"`, `1`, `"DETAILED"`, `{}`} {
		var got Explain
		if err := json.Unmarshal([]byte(in), &got); err == nil {
			t.Errorf("%s accepted as %+v", in, got)
		}
	}
	ts := start(t, nil)
	r := ts.do("POST", "/v1/recommend", "", map[string]any{"history": []string{ts.catalog()[0]}, "explain": "always"})
	if r.status != 400 || !strings.Contains(string(r.raw), "explain") {
		t.Fatalf("explain \"always\": %d %s", r.status, r.raw)
	}
}

func TestJSONDepth(t *testing.T) {
	for in, want := range map[string]int{`{}`: 1, `{"a":[1,{"b":2}]}`: 3, `"[[[["`: 0, `{"a":"\"{["}`: 1, `[[[]]]`: 3} {
		if got := jsonDepth([]byte(in), 100); got != want {
			t.Errorf("jsonDepth(%s) = %d, want %d", in, got, want)
		}
	}
}

func TestConfigSources(t *testing.T) {
	var c Config
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "c.json"), []byte(`{"addr": "0.0.0.0:9", "max_k": 7, "read_timeout": 3000000000}`), 0o644)
	if err := c.LoadFile(filepath.Join(dir, "c.json")); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"LLM4REC_MAX_K": "9", "LLM4REC_API_KEY": "k", "LLM4REC_OPEN_HEALTH": "false", "LLM4REC_WRITE_TIMEOUT": "2s"}
	if err := c.LoadEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if c.Addr != "0.0.0.0:9" || c.MaxK != 9 || c.APIKey != "k" || *c.OpenHealth || c.WriteTimeout != 2*time.Second ||
		c.ReadTimeout != 3*time.Second || c.MaxHistory != 1000 {
		t.Fatalf("config %+v", c)
	}
	if err := c.LoadEnv(func(k string) string { return map[string]string{"LLM4REC_MAX_K": "many"}[k] }); err == nil {
		t.Fatal("bad env value accepted")
	}
	if err := c.LoadFile(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("missing file accepted")
	}
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"adr": "x"}`), 0o644)
	if err := c.LoadFile(filepath.Join(dir, "bad.json")); err == nil || !strings.Contains(err.Error(), "adr") {
		t.Fatalf("unknown field: %v", err)
	}
	bad := Defaults()
	bad.APIKey, bad.AdminKey = "same", "same"
	if err := bad.Validate(); err == nil {
		t.Fatal("equal keys accepted")
	}
}

// Routing a request allocates nothing: the route table is built once, by New.
func TestMatchDoesNotAllocate(t *testing.T) {
	s := &Server{cfg: Defaults()}
	s.router = s.routes()
	if r, _ := s.match("GET", "/v1/items/42"); r == nil || r.name != "items" {
		t.Fatalf("GET /v1/items/42 routed to %+v", r)
	}
	if r, known := s.match("GET", "/v1/recommend"); r != nil || !known {
		t.Fatalf("GET /v1/recommend: %+v %v, want a known path without the method", r, known)
	}
	if n := testing.AllocsPerRun(100, func() { s.match("POST", "/v1/recommend") }); n != 0 {
		t.Fatalf("match allocates %v times per request", n)
	}
}

// Feedback on an item the served catalog does not have is refused, and nothing is written; an
// item already in a user's stored history that the catalog does not have (logged for a catalog
// since replaced) is left out of that user's requests instead of failing every one of them.
func TestUnknownItemsCannotPoisonAUser(t *testing.T) {
	ts := start(t, nil)
	cat := ts.catalog()
	ev := map[string]any{"event_id": "p1", "user_id": "u9", "item_id": "no-such-item", "type": "click", "timestamp": 1_700_000_000}
	if r := ts.do("POST", "/v1/feedback", "", ev); r.status != 422 || r.errCode() != "unknown_item" {
		t.Fatalf("feedback on an unknown item: %d %s", r.status, r.raw)
	}
	if n := ts.store.LastSeq(); n != 0 {
		t.Fatalf("%d events written", n)
	}
	// a stored history with an item this catalog lacks, as a log written under another model leaves it
	_, err := ts.store.Append(context.Background(),
		feedback.Event{EventID: "old1", UserID: "u9", ItemID: "gone", Type: "click", Timestamp: time.Unix(1_700_000_000, 0)},
		feedback.Event{EventID: "old2", UserID: "u9", ItemID: cat[3], Type: "click", Timestamp: time.Unix(1_700_000_001, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.live.CatchUp(ts.store); err != nil {
		t.Fatal(err)
	}
	r := ts.do("POST", "/v1/recommend", "", map[string]any{"user_id": "u9", "k": 5})
	if r.status != 200 {
		t.Fatalf("recommend for a user with an unknown stored item: %d %s", r.status, r.raw)
	}
	if slices.Contains(items(r), cat[3]) {
		t.Fatalf("the known stored item %s was not used as history: %v", cat[3], items(r))
	}
	if fmt.Sprint(r.body["history_skipped"]) != "[gone]" {
		t.Fatalf("history_skipped %v, want [gone]", r.body["history_skipped"])
	}
	if r := ts.do("POST", "/v1/recommend", "", map[string]any{"history": []string{cat[3]}, "k": 5}); r.body["history_skipped"] != nil {
		t.Fatalf("history_skipped on a request with nothing skipped: %s", r.raw)
	}
	// an unknown id the request itself sends is still the caller's error
	if r := ts.do("POST", "/v1/recommend", "", map[string]any{"history": []string{"gone"}, "k": 5}); r.status != 400 {
		t.Fatalf("unknown id in the request's history: %d %s", r.status, r.raw)
	}
}

// Edges a hostile or careless client meets: the Bearer scheme in any case, k outside 1..MaxK
// refused rather than silently replaced, unknown feedback fields refused as /v1/recommend's
// are, an oversized request head answered 431 without quoting it (it may carry the key), and a
// stalled body answered 408.
func TestRequestEdges(t *testing.T) {
	ts := start(t, func(c *Config) { c.APIKey = "sekrit-inference-key"; c.ReadTimeout = 300 * time.Millisecond })
	body, _ := json.Marshal(map[string]any{"history": []string{ts.catalog()[0]}, "k": 2})
	for _, h := range []struct {
		auth string
		want int
	}{{"bearer sekrit-inference-key", 200}, {"BEARER  sekrit-inference-key", 200}, {"Basic sekrit-inference-key", 401}, {"Bearer", 401}} {
		req, _ := http.NewRequest("POST", ts.url+"/v1/recommend", bytes.NewReader(body))
		req.Header.Set("Authorization", h.auth)
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != h.want {
			t.Fatalf("Authorization %q: %d, want %d", h.auth, resp.StatusCode, h.want)
		}
	}
	key := "sekrit-inference-key"
	for _, k := range []int{0, -1, ts.cfg.MaxK + 1} {
		r := ts.do("POST", "/v1/recommend", key, map[string]any{"history": []string{ts.catalog()[0]}, "k": k})
		if r.status != 400 || !strings.Contains(fmt.Sprint(r.body), "must be 1 to") {
			t.Fatalf("k %d: %d %s", k, r.status, r.raw)
		}
	}
	if r := ts.do("POST", "/v1/recommend", key, map[string]any{"history": []string{ts.catalog()[0]}}); r.status != 200 || len(items(r)) != 10 {
		t.Fatalf("k absent: %d, %d items", r.status, len(items(r)))
	}
	ev := map[string]any{"event_id": "e1", "user_id": "u1", "item_id": ts.catalog()[0], "type": "click", "timestamp": 1_700_000_000, "colour": "red"}
	if r := ts.do("POST", "/v1/feedback", key, ev); r.status != 400 || !strings.Contains(string(r.raw), "colour") {
		t.Fatalf("unknown feedback field: %d %s", r.status, r.raw)
	}
	if r := ts.do("POST", "/v1/feedback", key, map[string]any{"events": []any{ev}}); r.status != 400 {
		t.Fatalf("unknown field in a batch: %d %s", r.status, r.raw)
	}
	raw := func(req string) string {
		c, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, req)
		b, _ := io.ReadAll(c)
		return string(b)
	}
	got := raw("POST /v1/recommend HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\nX-Pad: " + strings.Repeat("a", 8000) + "\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 431") || strings.Contains(got, key) || !strings.Contains(got, "headers_too_large") {
		t.Fatalf("oversized head: %.300q", got)
	}
	got = raw("POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"event")
	if !strings.HasPrefix(got, "HTTP/1.1 408") || strings.Contains(got, "127.0.0.1") {
		t.Fatalf("stalled body: %.300q", got)
	}
}

// Error messages speak of the API's fields and JSON types, never of Go types.
func TestErrorMessagesNameNoGoTypes(t *testing.T) {
	ts := start(t, nil)
	for _, c := range []struct {
		path string
		body any
		want string
	}{
		{"/v1/recommend", map[string]any{"history": []string{ts.catalog()[0]}, "k": "ten"}, `k: got string, want an integer`},
		{"/v1/recommend", map[string]any{"history": "1", "k": 2}, `history: got string, want an array`},
		{"/v1/recommend", map[string]any{"user_id": "u", "colour": 1}, `unknown field "colour"`},
		{"/v1/feedback", map[string]any{"events": []any{map[string]any{"event_id": 5}}}, `event_id: got number, want a string`},
	} {
		r := ts.do("POST", c.path, "", c.body)
		msg := fmt.Sprint(r.body["error"])
		if r.status != 400 || !strings.Contains(msg, c.want) || strings.Contains(msg, "Go ") || strings.Contains(msg, "struct") ||
			strings.Contains(msg, "server.") || strings.Contains(msg, "feedback.") {
			t.Errorf("%s %v: %d %s (want %q)", c.path, c.body, r.status, r.raw, c.want)
		}
	}
}

// The recommend answer encodes as the map of its documented keys did: same names, same order
// (encoding/json sorts a map's keys), history_skipped only when something was skipped.
func TestRecommendResponseEncoding(t *testing.T) {
	a := 0.1
	items := []recommend.Recommendation{{ItemID: "7", Title: "T"}}
	for _, skipped := range [][]string{nil, {"9"}} {
		r := recommendResponse{Context: []string{"3"}, Debias: AppliedDebias{Popularity: 0.1}, Skipped: skipped, Alpha: a,
			Items: items, Mode: recommend.ModeTopK, Model: modelName{"m", "1"}, Provider: "cpu",
			Timings: recommend.Timings{Fusion: 5}, UserID: "u"}
		m := map[string]any{"user_id": "u", "items": items, "ips_alpha": a, "debias": AppliedDebias{Popularity: 0.1},
			"mode": recommend.ModeTopK, "context_items": []string{"3"}, "timings_us": recommend.Timings{Fusion: 5},
			"model": map[string]string{"name": "m", "version": "1"}, "provider": "cpu"}
		if skipped != nil {
			m["history_skipped"] = skipped
		}
		got, _ := json.Marshal(r)
		want, _ := json.Marshal(m)
		if string(got) != string(want) {
			t.Fatalf("struct:\n%s\nmap:\n%s", got, want)
		}
	}
}

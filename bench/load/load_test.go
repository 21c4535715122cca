package load

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/engine/preprocess"
	"github.com/llm4rec/llm4rec/eval"
)

// stubServer answers /v1/recommend and /v1/feedback like the engine's server would, checking
// each request's shape; every fifth request is answered 503 and requests without the key 401.
type stubServer struct {
	t       *testing.T
	n       atomic.Int64
	mu      sync.Mutex
	status  map[int]int
	kinds   map[string]int
	events  int
	bad     []string
	key     string
	latency time.Duration
}

func newStub(t *testing.T, key string, latency time.Duration) (*stubServer, *httptest.Server) {
	s := &stubServer{t: t, status: map[int]int{}, kinds: map[string]int{}, key: key, latency: latency}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *stubServer) fail(format string) {
	s.mu.Lock()
	s.bad = append(s.bad, format)
	s.mu.Unlock()
}

func (s *stubServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code, kind := s.answer(r)
	s.mu.Lock()
	s.status[code]++
	s.kinds[kind]++
	s.mu.Unlock()
	time.Sleep(s.latency)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if code != 200 {
		io.WriteString(w, `{"error":{"code":"overloaded","message":"try later"}}`)
		return
	}
	io.WriteString(w, `{"items":[]}`)
}

func (s *stubServer) answer(r *http.Request) (int, string) {
	if s.key != "" && r.Header.Get("Authorization") != "Bearer "+s.key {
		return 401, "unauthorized"
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		s.fail("method or content type " + r.Method)
		return 400, "bad"
	}
	body, _ := io.ReadAll(r.Body)
	kind := ""
	switch r.URL.Path {
	case "/v1/recommend":
		var req struct {
			UserID      string   `json:"user_id"`
			History     []string `json:"history"`
			Query       string   `json:"query"`
			Image       []byte   `json:"image"` // base64 in JSON
			Audio       []byte   `json:"audio"`
			K           int      `json:"k"`
			ExcludeSeen bool     `json:"exclude_seen"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || len(req.History) == 0 || req.K != 10 {
			s.fail("recommend body " + string(body[:min(len(body), 200)]))
			return 400, "bad"
		}
		kind = KindHistory
		switch {
		case req.Query != "":
			kind = KindQuery
		case len(req.Image) > 0:
			kind = KindImage
			if _, err := (preprocess.ImageConfig{}).AppendPixels(nil, req.Image); err != nil {
				s.fail("image: " + err.Error())
			}
		case len(req.Audio) > 0:
			kind = KindAudio
			if _, _, err := (preprocess.AudioConfig{}).LogMel(req.Audio); err != nil {
				s.fail("audio: " + err.Error())
			}
		}
	case "/v1/feedback":
		kind = KindFeedback
		var one feedbackEvent
		var many struct {
			Events []feedbackEvent `json:"events"`
		}
		if json.Unmarshal(body, &many) == nil && len(many.Events) > 0 {
		} else if json.Unmarshal(body, &one) == nil && one.EventID != "" {
			many.Events = []feedbackEvent{one}
		}
		if len(many.Events) == 0 {
			s.fail("feedback body " + string(body))
			return 400, "bad"
		}
		for _, e := range many.Events {
			if e.EventID == "" || e.UserID == "" || e.ItemID == "" || e.Type == "" || e.Timestamp == "" {
				s.fail("feedback event " + string(body))
			}
			if _, err := time.Parse(time.RFC3339, e.Timestamp); err != nil {
				s.fail("feedback timestamp " + e.Timestamp)
			}
		}
		s.mu.Lock()
		s.events += len(many.Events)
		s.mu.Unlock()
	default:
		s.fail("path " + r.URL.Path)
		return 404, "bad"
	}
	if s.n.Add(1)%5 == 0 {
		return 503, kind
	}
	return 200, kind
}

func TestHTTPClosedLoopCountsStatuses(t *testing.T) {
	stub, srv := newStub(t, "sesame", time.Millisecond)
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{URL: srv.URL + "/", Concurrency: 4, Duration: time.Second,
		Mix: Mix{KindHistory: 40, KindQuery: 20, KindImage: 20, KindAudio: 20}, FeedbackShare: 0.2, FeedbackBatch: 3,
		Key: "sesame", Progress: &progress, ProgressEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stub.mu.Lock()
	defer stub.mu.Unlock()
	if len(stub.bad) > 0 {
		t.Fatalf("the server saw malformed requests: %q", stub.bad[:min(len(stub.bad), 5)])
	}
	total := 0
	for code, n := range stub.status {
		total += n
		if got := rep.Status[statusKey(code)]; got != n {
			t.Errorf("status %d: report counts %d, server answered %d", code, got, n)
		}
	}
	if rep.Requests != total || total < 10 {
		t.Fatalf("report has %d requests, server answered %d (want at least 10)", rep.Requests, total)
	}
	if rep.OK != stub.status[200] || rep.Status["503"] == 0 || rep.Status["401"] != 0 {
		t.Errorf("ok %d, statuses %v; server %v", rep.OK, rep.Status, stub.status)
	}
	for _, k := range []string{KindHistory, KindQuery, KindImage, KindAudio, KindFeedback} {
		got := 0
		if ks := rep.ByKind[k]; ks != nil {
			got = ks.Requests
		}
		if got != stub.kinds[k] {
			t.Errorf("kind %s: report counts %d, server saw %d", k, got, stub.kinds[k])
		}
	}
	if len(rep.ByKind) < 3 {
		t.Errorf("kinds %v: the mix has five", rep.ByKind)
	}
	if stub.events != 3*stub.kinds[KindFeedback] {
		t.Errorf("%d events in %d feedback requests, want 3 each", stub.events, stub.kinds[KindFeedback])
	}
	if rep.Mode != "closed-loop" || rep.Errors["503 Service Unavailable (overloaded: try later)"] != rep.Status["503"] {
		t.Errorf("mode %s errors %v", rep.Mode, rep.Errors)
	}
	if rep.Latency.P50 < 1 || rep.Latency.Max < rep.Latency.P99 {
		t.Errorf("latency %+v: the server sleeps 1 ms", rep.Latency)
	}
	if !strings.Contains(progress.String(), "bench http:") {
		t.Errorf("no progress lines: %q", progress.String())
	}
}

func TestHTTPOpenLoopAchievesTheRate(t *testing.T) {
	stub, srv := newStub(t, "", 2*time.Millisecond)
	const rate, seconds = 100.0, 1.5
	rep, err := Run(context.Background(), Config{URL: srv.URL, Rate: rate, Duration: time.Duration(seconds * float64(time.Second)),
		Mix: Mix{KindHistory: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != "open-loop" || rep.RateAsked != rate {
		t.Errorf("mode %s rate asked %v", rep.Mode, rep.RateAsked)
	}
	// 2 shared cores: allow for scheduling noise, not for a wrong pacer
	if rep.Rate < 0.85*rate || rep.Rate > 1.15*rate {
		t.Errorf("achieved rate %.1f/s, asked %v/s", rep.Rate, rate)
	}
	if n := float64(rep.Requests); n < 0.85*rate*seconds || n > 1.1*rate*seconds+1 {
		t.Errorf("%d requests in %v s at %v/s", rep.Requests, seconds, rate)
	}
	stub.mu.Lock()
	if got := stub.status[200] + stub.status[503]; got != rep.Requests {
		t.Errorf("server answered %d, report counts %d", got, rep.Requests)
	}
	stub.mu.Unlock()
	if len(rep.ByKind) != 1 || rep.ByKind[KindHistory] == nil {
		t.Errorf("mix history only, got kinds %v", rep.ByKind)
	}
}

func TestHTTPUnreachableServerCountsTransportErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	rep, err := Run(context.Background(), Config{URL: url, Concurrency: 2, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.OK != 0 || rep.Status["error"] != rep.Requests || len(rep.Errors) == 0 {
		t.Errorf("requests %d ok %d status %v errors %v", rep.Requests, rep.OK, rep.Status, rep.Errors)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{URL: "localhost:8080"}, {URL: "http://x", Rate: -1}, {URL: "http://x", FeedbackShare: 1.5},
		{URL: "http://x", Mix: Mix{KindHistory: 0}}} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("%+v: want an error", cfg)
		}
	}
}

func TestParseMix(t *testing.T) {
	m, err := ParseMix("history=60, query=25,image=10,audio=5")
	if err != nil || m[KindHistory] != 60 || m[KindAudio] != 5 || m.String() != "history=60,query=25,image=10,audio=5" {
		t.Fatalf("ParseMix = %v, %v", m, err)
	}
	for _, bad := range []string{"video=3", "history", "history=-1", "history=0", "query=x"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
	if DefaultMix().String() != "history=60,query=25,image=10,audio=5" {
		t.Errorf("default mix %s", DefaultMix())
	}
}

func TestRequestKindsFollowTheMix(t *testing.T) {
	g := newRequestGen(Config{Mix: Mix{KindHistory: 3, KindQuery: 1}, FeedbackShare: 0.5, Data: SyntheticDataset(10)}.withDefaults())
	count := map[string]int{}
	const n = 20000
	for i := range n {
		count[g.kind(rand.New(rand.NewPCG(1, uint64(i))))]++
	}
	for k, want := range map[string]float64{KindFeedback: 0.5, KindHistory: 0.375, KindQuery: 0.125, KindImage: 0, KindAudio: 0} {
		if got := float64(count[k]) / n; got < want-0.02 || got > want+0.02 {
			t.Errorf("kind %s: share %.3f, want %.3f", k, got, want)
		}
	}
}

// The load generator's queries and its restriction of a dataset (eval.Load) to a catalog.
func TestRequestDataset(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("items.jsonl", `{"item_id":"a","title":"Alpha","categories":["Drama"]}
{"item_id":7,"title":"Seven","text":"a long plot about seven people"}

{"item_id":"c","title":"Gamma"}
`)
	write("interactions.csv", "user_id,item_id,timestamp,rating\nu1,c,30,5\nu1,a,10,4\nu2,7,5,1\nu1,7,10,3\n")
	d, err := eval.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if q := queryText(d.Items[0]); q != "a drama film like Alpha" {
		t.Errorf("query of a titled item: %q", q)
	}
	if q := queryText(d.Items[1]); q != "a long plot about seven people" {
		t.Errorf("query of an item with text: %q", q)
	}
	if err := restrict(d, []string{"a", "c"}); err != nil {
		t.Fatal(err)
	}
	if len(d.Items) != 2 || len(d.Users) != 1 || strings.Join(d.Users[0].Items, ",") != "a,c" {
		t.Errorf("restricted: %+v", d)
	}
	if err := restrict(d, []string{"zzz"}); err == nil {
		t.Error("restricting to nothing: want an error")
	}
	if s := SyntheticDataset(5); len(s.Items) != 5 || s.Items[4].ID != "5" {
		t.Errorf("synthetic %+v", s.Items)
	}
}

func TestRequestData(t *testing.T) {
	bundle := t.TempDir()
	os.WriteFile(filepath.Join(bundle, "items.jsonl"), []byte(`{"item_id":"1","title":"One"}`+"\n"+`{"item_id":"2","title":"Two"}`+"\n"), 0o644)
	d, err := RequestData("", bundle, 10)
	if err != nil || len(d.Items) != 2 || len(d.Users) != 0 {
		t.Fatalf("bundle catalog: %+v, %v", d, err)
	}
	d, err = RequestData("", filepath.Join(bundle, "absent"), 10)
	if err != nil || len(d.Items) != 10 || !strings.Contains(d.Source, "synthetic") {
		t.Fatalf("no bundle: %+v, %v", d, err)
	}
	ml := t.TempDir()
	os.WriteFile(filepath.Join(ml, "u.item"), []byte("1|One|||x|0\n2|Two|||x|0\n3|Three|||x|0\n"), 0o644)
	os.WriteFile(filepath.Join(ml, "u.data"), []byte("9\t3\t5\t1\n9\t1\t5\t2\n8\t3\t5\t1\n"), 0o644)
	d, err = RequestData(ml, bundle, 10)
	if err != nil || len(d.Items) != 2 || len(d.Users) != 1 || strings.Join(d.Users[0].Items, ",") != "1" ||
		!strings.Contains(d.Source, "restricted") {
		t.Fatalf("data restricted to the bundle: %+v, %v", d, err)
	}
	os.WriteFile(filepath.Join(bundle, "items.jsonl"), []byte(`{"item_id":"x","title":"X"}`+"\n"), 0o644)
	if _, err := RequestData(ml, bundle, 10); err == nil || !strings.Contains(err.Error(), "shares no item") {
		t.Errorf("disjoint data and catalog: %v", err)
	}
}

// Several URLs, comma-separated: requests go to each server in turn, and a URL list with a
// bad entry is refused.
func TestHTTPSeveralServers(t *testing.T) {
	a, srvA := newStub(t, "", time.Millisecond)
	b, srvB := newStub(t, "", time.Millisecond)
	rep, err := Run(context.Background(), Config{URL: srvA.URL + "," + srvB.URL + "/", Concurrency: 2, Duration: 500 * time.Millisecond,
		Mix: Mix{KindHistory: 1}, FeedbackShare: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	count := func(s *stubServer) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.bad) > 0 {
			t.Fatalf("malformed requests: %q", s.bad[:min(len(s.bad), 5)])
		}
		n := 0
		for _, k := range s.status {
			n += k
		}
		return n
	}
	na, nb := count(a), count(b)
	if na+nb != rep.Requests || na < 5 || nb < 5 || max(na, nb) > 2*min(na, nb)+2 {
		t.Fatalf("server a answered %d, b %d; the report counts %d", na, nb, rep.Requests)
	}
	if _, err := Run(context.Background(), Config{URL: srvA.URL + ",ftp://x", Duration: time.Second}); err == nil {
		t.Fatal("a list with a bad URL was taken")
	}
}

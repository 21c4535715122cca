package load

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/llm4rec/llm4rec/bench/report"
)

func fakeHTTP() *Report {
	rep := &Report{Run: report.Run{Kind: "http"}, URL: "http://x", Mode: "closed-loop", Concurrency: 2, DurationS: 1, Mix: "history=1",
		UniqueContent: true, Status: map[string]int{"200": 3, "503": 1}, Errors: map[string]int{"503 Service Unavailable (overloaded)": 1}}
	for i, c := range []int{200, 200, 503, 200} {
		rep.samples = append(rep.samples, sample{start: time.Duration(1e9 + i*400e6), latency: time.Duration(i+1) * time.Millisecond,
			kind: []string{KindHistory, KindQuery, KindHistory, KindFeedback}[i], code: c})
	}
	rep.summarize(time.Unix(1, 0))
	return rep
}

func TestHTTPSummary(t *testing.T) {
	rep := fakeHTTP()
	if rep.Requests != 4 || rep.OK != 3 {
		t.Fatalf("requests %d ok %d", rep.Requests, rep.OK)
	}
	if rep.ByKind[KindHistory].Requests != 2 || rep.ByKind[KindHistory].OK != 1 || rep.ByKind[KindHistory].Status["503"] != 1 {
		t.Errorf("history stats %+v", rep.ByKind[KindHistory])
	}
	if rep.Latency.Max != 4 || rep.LatencyOK.P50 != 2 {
		t.Errorf("latency %+v ok %+v", rep.Latency, rep.LatencyOK)
	}
	// starts at 0, 0.4, 0.8, 1.2 s: two buckets
	if len(rep.Timeline) != 2 || rep.Timeline[0].Requests != 3 || rep.Timeline[1].T != 1 || rep.Timeline[1].OK != 1 {
		t.Errorf("timeline %+v", rep.Timeline)
	}
	if want := 3 / 1.2; rep.Rate < want*0.999 || rep.Rate > want*1.001 {
		t.Errorf("rate %v, want %v (3 intervals over 1.2 s)", rep.Rate, want)
	}
	if want := 3 / 1.204; rep.Throughput < want*0.999 || rep.Throughput > want*1.001 {
		t.Errorf("throughput %v, want %v", rep.Throughput, want)
	}
}

func TestHTTPJSONAndTable(t *testing.T) {
	rep := fakeHTTP()
	path, err := rep.WriteJSON(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"kind", "url", "mode", "requests", "ok", "rate", "throughput", "latency", "status", "errors", "by_kind", "timeline"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("http.json lacks %q", k)
		}
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"closed-loop with 2 callers", "ok 3 (75.0%)", "history", "feedback", "200:3 503:1", "503 Service Unavailable (overloaded)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestPlotIsWritten(t *testing.T) {
	paths, err := fakeHTTP().WritePlots(t.TempDir())
	if err != nil || len(paths) != 1 {
		t.Fatalf("plots %v %v", paths, err)
	}
	if raw, err := os.ReadFile(paths[0]); err != nil || !bytes.HasPrefix(raw, []byte("\x89PNG")) || len(raw) < 2000 {
		t.Errorf("%s is not a PNG picture (%d bytes, %v)", paths[0], len(raw), err)
	}
}

// BenchmarkRequestTarget is what building one request of the default mix costs the load
// generator (it counts in vegeta's latency, so it must stay far below a server's).
func BenchmarkRequestTarget(b *testing.B) {
	g := newRequestGen(Config{URL: "http://x", FeedbackShare: 0.2}.withDefaults())
	var t vegeta.Target
	b.ReportAllocs()
	for b.Loop() {
		if err := g.target(&t); err != nil {
			b.Fatal(err)
		}
	}
}

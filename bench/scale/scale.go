// Package scale is `llm4rec bench scale`: what the engine costs as the catalog grows. For each
// bundle (given, or synthesized with random weights by the export's `synth-bundle` into a cache
// folder) it opens the real engine in this process and measures the bundle's load time
// (validation, graphs, warm-up), the process's resident memory after the load, and
// Recommend's latency percentiles and throughput, history-only and with a typed query, from
// one and from several concurrent callers, with the mean time of each stage of the pipeline.
// Bundles are measured one after the other in catalog order, each closed before the next is
// opened.
package scale

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/bench/synth"
	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/engine/retrieval"
)

// Kind is what a measured request carries.
type Kind string

const (
	// KindHistory is a history of HistoryLen catalog items, k = K, seen items excluded.
	KindHistory Kind = "history"
	// KindQuery adds a typed query, distinct in every request, so that the embedding cache
	// never answers and the text encoder runs each time.
	KindQuery Kind = "query"
)

// AllKinds lists the kinds in the order they are measured.
var AllKinds = []Kind{KindHistory, KindQuery}

// Config configures Run. Zero fields take the documented defaults; Bundles or Items must be
// given.
type Config struct {
	// Bundles are bundle folders measured as they are.
	Bundles []string
	// Items are catalog sizes to measure on synthetic bundles (random weights; the export's
	// `synth-bundle`), each kept in CacheDir/items-N and made there when absent.
	Items []int
	// CacheDir holds the synthetic bundles (default $LLM4REC_CACHE/synth, else
	// ~/.cache/llm4rec/synth).
	CacheDir string
	// Python is the interpreter of the export virtualenv that synthesizes bundles (default
	// $LLM4REC_CACHE/venv-export/bin/python, else ~/.cache/llm4rec/venv-export/bin/python).
	Python string
	// ExportDir is the folder holding the llm4rec_export package (default "export", the
	// repository's, relative to the working folder).
	ExportDir string
	// Callers are the numbers of concurrent callers of each point (default 1, 4, 16).
	Callers []int
	// Kinds are the request kinds (default history, query).
	Kinds []Kind
	// Duration is the measured time of one point (default 3s), after Warmup.
	Duration time.Duration
	// Warmup is the untimed run before each point (default Duration/5; every caller makes at
	// least one call).
	Warmup time.Duration
	// HistoryLen is the history length of every request (default 50, as `bench http`).
	HistoryLen int
	// K is how many items each request asks for (default 10).
	K int
	// Runtime holds the ONNX Runtime settings (library, threads, provider; default CPU).
	Runtime ort.Options
	// Engine is the engine configuration every bundle is opened with (its zero value: the
	// engine's defaults).
	Engine recommend.Config
	// Seed makes histories and queries reproducible (default 1).
	Seed uint64
	// Progress receives one line per bundle and per point; nil writes nothing.
	Progress io.Writer
	// Logger receives the engine's load-time logs; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	cache := os.Getenv("LLM4REC_CACHE")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache", "llm4rec")
		}
	}
	if c.CacheDir == "" {
		c.CacheDir = filepath.Join(cache, "synth")
	}
	if c.Python == "" {
		c.Python = filepath.Join(cache, "venv-export", "bin", "python")
	}
	if c.ExportDir == "" {
		c.ExportDir = "export"
	}
	if len(c.Callers) == 0 {
		c.Callers = []int{1, 4, 16}
	}
	if len(c.Kinds) == 0 {
		c.Kinds = AllKinds
	}
	if c.Duration <= 0 {
		c.Duration = 3 * time.Second
	}
	if c.Warmup <= 0 {
		c.Warmup = c.Duration / 5
	}
	if c.HistoryLen <= 0 {
		c.HistoryLen = 50
	}
	if c.K <= 0 {
		c.K = 10
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Runtime.Provider == "" {
		c.Runtime.Provider = ort.ProviderCPU
	}
	return c
}

// ParseKinds reads a comma-separated list of kinds.
func ParseKinds(s string) ([]Kind, error) {
	return report.ParseList(s, func(f string) (Kind, bool) {
		k := Kind(strings.ToLower(f))
		return k, slices.Contains(AllKinds, k)
	}, "a request kind (history or query)")
}

// Report is the result of Run.
type Report struct {
	report.Run
	Provider   ort.Provider `json:"provider"`
	Duration   string       `json:"duration"`
	HistoryLen int          `json:"history_len"`
	K          int          `json:"k"`
	Bundles    []Bundle     `json:"bundles"`
	// P50Ratio is, for each kind, the largest catalog's p50 at one caller over the smallest's
	// (absent with fewer than two bundles measured).
	P50Ratio map[Kind]float64 `json:"p50_ratio_largest_over_smallest,omitempty"`
}

// Bundle is one catalog's measurements.
type Bundle struct {
	Dir         string `json:"dir"`
	Name        string `json:"name"`
	Items       int    `json:"items"`
	Synthesized bool   `json:"synthesized"` // made by this run (else found in place)
	// BundleBytes is the size of the bundle's files on disk.
	BundleBytes int64 `json:"bundle_bytes"`
	// ValidateSeconds is the file checks alone (sizes, sha256, catalog; no graph loaded).
	ValidateSeconds float64 `json:"validate_s"`
	// LoadSeconds is recommend.Open: validation with the graphs' I/O, sessions, catalog,
	// index, warm-up.
	LoadSeconds float64 `json:"load_s"`
	// RSSBeforeMB and RSSAfterMB are the process's resident memory before Open and after it
	// (garbage collected and returned to the system both times); LoadRSSMB is their
	// difference, what the loaded bundle holds.
	RSSBeforeMB float64 `json:"rss_before_mb"`
	RSSAfterMB  float64 `json:"rss_after_load_mb"`
	LoadRSSMB   float64 `json:"load_rss_mb"`
	// GoHeapMB is the Go heap in use after the load (the catalog, embeddings and index; ONNX
	// Runtime's memory is outside it).
	GoHeapMB float64 `json:"go_heap_mb"`
	// PeakRSSMB is the largest resident memory seen while this bundle was measured.
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// Index is the retrieval index the engine ran with; Recall10, for an index other than
	// exact, is its recall@10 against the exact scan on RecallQueries retrieval queries like
	// the requests' (the normalised sum of a random history's embeddings, nothing skipped).
	Index         string   `json:"index"`
	Recall10      *float64 `json:"recall@10,omitempty"`
	RecallQueries int      `json:"recall_queries,omitempty"`
	// SteeringRank is the rank in which a query's steering terms over the catalog are taken
	// (the bundle's fusion.steering_up), 0 for the full product with the item embeddings.
	SteeringRank int     `json:"steering_rank"`
	Points       []Point `json:"points"`
	Error        string  `json:"error,omitempty"`
}

// Point is one kind of request at one number of callers.
type Point struct {
	Kind    Kind           `json:"kind"`
	Callers int            `json:"callers"`
	Calls   int            `json:"calls"`
	Errors  int            `json:"errors"`
	PerSec  float64        `json:"per_sec"`
	Latency report.Summary `json:"latency"`
	// Stages are the mean wall time of each stage of the calls (recommend.Timings), in ms.
	Stages Stages `json:"stages_ms"`
	// FirstError is the first error a call returned, when any did.
	FirstError string `json:"first_error,omitempty"`
}

// Stages are mean stage times in milliseconds.
type Stages struct {
	Encode   float64 `json:"encode"`
	Retrieve float64 `json:"retrieve"`
	Fusion   float64 `json:"fusion"`
	Generate float64 `json:"generate"`
	Rank     float64 `json:"rank"`
}

// Run measures every bundle.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Bundles) == 0 && len(cfg.Items) == 0 {
		return nil, errors.New("bench scale: give bundles or catalog sizes to synthesize")
	}
	rep := &Report{Run: report.NewRun("scale", time.Now()), Provider: cfg.Runtime.Provider,
		Duration: cfg.Duration.String(), HistoryLen: cfg.HistoryLen, K: cfg.K}
	var todo []Bundle
	for _, dir := range cfg.Bundles {
		m, err := bundle.ReadManifest(dir)
		if err != nil {
			return nil, fmt.Errorf("bench scale: %w", err)
		}
		todo = append(todo, Bundle{Dir: dir, Name: m.Name, Items: m.Items.Count})
	}
	for _, n := range cfg.Items {
		dir, made, err := Synthesize(ctx, cfg, n)
		if err != nil {
			return nil, err
		}
		todo = append(todo, Bundle{Dir: dir, Name: fmt.Sprintf("synthetic-%d", n), Items: n, Synthesized: made})
	}
	slices.SortStableFunc(todo, func(a, b Bundle) int { return a.Items - b.Items })
	opts := cfg.Runtime
	opts.Logger = cfg.Logger
	rt, err := ort.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("bench scale: %w", err)
	}
	defer rt.Close()
	rep.Provider = rt.Provider()
	for _, b := range todo {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		measure(ctx, cfg, rt, &b)
		rep.Bundles = append(rep.Bundles, b)
	}
	rep.P50Ratio = p50Ratios(rep.Bundles)
	return rep, nil
}

// p50Ratios is, per kind, the largest catalog's p50 at one caller over the smallest's.
func p50Ratios(bs []Bundle) map[Kind]float64 {
	var ok []Bundle
	for _, b := range bs {
		if b.Error == "" {
			ok = append(ok, b)
		}
	}
	if len(ok) < 2 || ok[0].Items == ok[len(ok)-1].Items {
		return nil
	}
	out := map[Kind]float64{}
	for _, kind := range AllKinds {
		lo, hi := ok[0].point(kind, 1), ok[len(ok)-1].point(kind, 1)
		if lo != nil && hi != nil && lo.Latency.P50 > 0 {
			out[kind] = hi.Latency.P50 / lo.Latency.P50
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (b *Bundle) point(kind Kind, callers int) *Point {
	for i := range b.Points {
		if b.Points[i].Kind == kind && b.Points[i].Callers == callers {
			return &b.Points[i]
		}
	}
	return nil
}

// Synthesize returns the folder of a synthetic bundle of n items in cfg.CacheDir, making it
// with the export's `synth-bundle` when it is not there yet (made reports that).
func Synthesize(ctx context.Context, cfg Config, n int) (dir string, made bool, err error) {
	cfg = cfg.withDefaults()
	if n < 1 {
		return "", false, fmt.Errorf("bench scale: catalog size %d: want at least 1", n)
	}
	dir = filepath.Join(cfg.CacheDir, "items-"+strconv.Itoa(n))
	if m, err := bundle.ReadManifest(dir); err == nil && m.Items.Count == n {
		return dir, false, nil
	}
	if _, err := os.Stat(cfg.Python); err != nil {
		return "", false, fmt.Errorf("bench scale: no export virtualenv at %s (%w): run `make venv`, or give the bundles", cfg.Python, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.ExportDir, "llm4rec_export")); err != nil {
		return "", false, fmt.Errorf("bench scale: no llm4rec_export package in %s (%w): run from the repository root or give the export folder", cfg.ExportDir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, err
	}
	report.Progressf(cfg.Progress, "bench scale: synthesizing %d items into %s", n, abs)
	cmd := exec.CommandContext(ctx, cfg.Python, "-m", "llm4rec_export", "synth-bundle", "--items", strconv.Itoa(n), "--out", abs)
	cmd.Dir = cfg.ExportDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", false, fmt.Errorf("bench scale: synth-bundle --items %d: %w\n%s", n, err, tail(out, 2000))
	}
	return dir, true, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// measure fills b: load, memory and every point. A bundle that fails to load keeps its error
// and the run goes on.
func measure(ctx context.Context, cfg Config, rt *ort.Runtime, b *Bundle) {
	b.BundleBytes = dirBytes(b.Dir)
	t := time.Now()
	if _, err := bundle.Validate(b.Dir, nil); err != nil {
		b.Error = err.Error()
		return
	}
	b.ValidateSeconds = time.Since(t).Seconds()
	settle()
	b.RSSBeforeMB = rssMB()
	t = time.Now()
	ecfg := cfg.Engine
	if ecfg.Logger == nil {
		ecfg.Logger = cfg.Logger
	}
	e, err := recommend.Open(b.Dir, rt, ecfg)
	if err != nil {
		b.Error = err.Error()
		return
	}
	defer e.Close()
	b.LoadSeconds = time.Since(t).Seconds()
	settle()
	b.RSSAfterMB = rssMB()
	b.LoadRSSMB = b.RSSAfterMB - b.RSSBeforeMB
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.GoHeapMB = float64(ms.HeapAlloc) / (1 << 20)
	b.Name = e.Manifest().Name
	b.Items = len(e.Items())
	report.Progressf(cfg.Progress, "bench scale: %s (%d items): loaded in %.2fs, RSS %.0f MB (+%.0f MB)", b.Name, b.Items,
		b.LoadSeconds, b.RSSAfterMB, b.LoadRSSMB)

	stop := make(chan struct{})
	peak := make(chan float64)
	go func() {
		p := rssMB()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				peak <- max(p, rssMB())
				return
			case <-tick.C:
				p = max(p, rssMB())
			}
		}
	}()
	ids := make([]string, len(e.Items()))
	for i, it := range e.Items() {
		ids[i] = it.ID
	}
	for _, kind := range cfg.Kinds {
		for _, callers := range cfg.Callers {
			if ctx.Err() != nil {
				break
			}
			pt := runPoint(ctx, cfg, e, ids, kind, callers)
			report.Progressf(cfg.Progress, "bench scale: %s %s x%d: %s/s, p50 %s ms, p99 %s ms", b.Name, kind, callers,
				report.FmtRate(pt.PerSec), report.FmtMs(pt.Latency.P50), report.FmtMs(pt.Latency.P99))
			b.Points = append(b.Points, pt)
		}
	}
	close(stop)
	b.PeakRSSMB = <-peak
	b.Index = string(retrieval.KindOf(e.Index()))
	b.SteeringRank = e.SteeringRank()
	if b.Index != string(retrieval.IndexExact) && ctx.Err() == nil {
		if err := b.recall(cfg, e); err != nil {
			b.Error = err.Error()
		}
	}
}

// runPoint measures one kind at one number of callers: a warm-up, then Duration of closed-loop
// calls (each caller sends its next request when the previous is answered).
func runPoint(ctx context.Context, cfg Config, e *recommend.Engine, ids []string, kind Kind, callers int) Point {
	pt := Point{Kind: kind, Callers: callers}
	type result struct {
		lat    []time.Duration
		stages recommend.Timings
		errs   int
		first  error
	}
	results := make([]result, callers)
	var wg sync.WaitGroup
	start := time.Now()
	warmEnd := start.Add(cfg.Warmup)
	end := warmEnd.Add(cfg.Duration)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(c)+1))
			r := &results[c]
			for n := 0; ; n++ {
				// every caller ends with at least one measured call, however long calls take
				if ctx.Err() != nil || (time.Now().After(end) && len(r.lat)+r.errs > 0) {
					return
				}
				req := request(rng, ids, kind, cfg, uint64(c)<<32|uint64(n))
				t := time.Now()
				resp, err := e.Recommend(ctx, req)
				d := time.Since(t)
				if n == 0 || t.Before(warmEnd) {
					continue // warm-up: every caller's first call, and all calls started before Warmup ended
				}
				if err != nil {
					r.errs++
					if r.first == nil {
						r.first = err
					}
					continue
				}
				r.lat = append(r.lat, d)
				s := resp.Timings
				r.stages.Encode += s.Encode
				r.stages.Retrieve += s.Retrieve
				r.stages.Fusion += s.Fusion
				r.stages.Generate += s.Generate
				r.stages.Rank += s.Rank
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(warmEnd).Seconds()
	var lat []time.Duration
	var st recommend.Timings
	for _, r := range results {
		lat = append(lat, r.lat...)
		pt.Errors += r.errs
		if r.first != nil && pt.FirstError == "" {
			pt.FirstError = r.first.Error()
		}
		st.Encode += r.stages.Encode
		st.Retrieve += r.stages.Retrieve
		st.Fusion += r.stages.Fusion
		st.Generate += r.stages.Generate
		st.Rank += r.stages.Rank
	}
	pt.Calls = len(lat)
	pt.Latency = report.Summarize(lat)
	if elapsed > 0 {
		pt.PerSec = float64(pt.Calls) / elapsed
	}
	if n := float64(pt.Calls); n > 0 {
		us := func(v int64) float64 { return float64(v) / n / 1000 }
		pt.Stages = Stages{Encode: us(st.Encode), Retrieve: us(st.Retrieve), Fusion: us(st.Fusion),
			Generate: us(st.Generate), Rank: us(st.Rank)}
	}
	return pt
}

// request draws one request: HistoryLen distinct catalog items (fewer when the catalog is
// smaller), k = K, seen items excluded; a query kind adds a text unique to tag.
func request(rng *rand.Rand, ids []string, kind Kind, cfg Config, tag uint64) recommend.Request {
	n := min(cfg.HistoryLen, len(ids))
	hist := make([]string, 0, n)
	seen := make(map[int]bool, n)
	for len(hist) < n {
		i := rng.IntN(len(ids))
		if !seen[i] {
			seen[i] = true
			hist = append(hist, ids[i])
		}
	}
	req := recommend.Request{History: hist, K: cfg.K, ExcludeSeen: true}
	if kind == KindQuery {
		req.Query = synth.RandomText(rng, 8) + " " + strconv.FormatUint(tag, 36)
	}
	return req
}

// settle collects garbage and returns freed memory to the system, so that resident memory
// measures what is held.
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

// rssMB is this process's resident memory in MiB (Linux: VmRSS of /proc/self/status; 0
// elsewhere).
func rssMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 2 && fs[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(fs[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// recallQueries is how many retrieval queries recall@10 is measured on.
const recallQueries = 200

// recall measures the engine's index against an exact scan of the same embeddings.
func (b *Bundle) recall(cfg Config, e *recommend.Engine) error {
	m := e.Manifest()
	emb, err := bundle.ReadFloat32s(filepath.Join(b.Dir, m.Items.Embeddings), len(e.Items())*m.EmbeddingDim)
	if err != nil {
		return err
	}
	exact, err := retrieval.NewExact(emb, m.EmbeddingDim)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 1<<40))
	n, dim := exact.Len(), exact.Dim()
	queries := make([][]float32, recallQueries)
	for i := range queries {
		q := make([]float32, dim)
		for range min(cfg.HistoryLen, n) {
			for d, x := range exact.Vector(rng.IntN(n)) {
				q[d] += x
			}
		}
		retrieval.Normalize(q)
		queries[i] = q
	}
	r := retrieval.Recall(e.Index(), exact, queries, 10)
	b.Recall10, b.RecallQueries = &r, len(queries)
	return nil
}

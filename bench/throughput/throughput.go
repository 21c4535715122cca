// Package throughput is `llm4rec bench throughput`: it runs each graph of a model bundle (and
// the whole recommend pipeline) on ONNX Runtime directly, through the engine's dynamic
// batcher and through the engine itself, per execution provider and batch size, and reports
// samples/s and exact latency percentiles per point, as a table, JSON and plots.
package throughput

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/ort"
)

// Path names how samples reach a graph in a throughput measurement.
type Path string

const (
	// PathRaw runs ort.Session.Run on a prebuilt [B,...] batch from one caller: the ceiling.
	PathRaw Path = "raw"
	// PathBatcher has B concurrent callers each submit a one-sample request through
	// engine/batch.Batcher over the same session, so batches form dynamically as in the engine.
	PathBatcher Path = "batcher"
	// PathEngine has B concurrent callers go through the engine's own entry point
	// (recommend.Engine: EmbedQuery, EmbedImage, EmbedAudio, Recommend), preprocessing and
	// caching included; the generator, which the engine runs per request, is run one sample
	// per call.
	PathEngine Path = "engine"
)

// AllPaths lists the paths in the order they are measured and printed.
var AllPaths = []Path{PathRaw, PathBatcher, PathEngine}

// ParsePaths reads a comma-separated list of path names.
func ParsePaths(s string) ([]Path, error) {
	var out []Path
	for _, f := range report.SplitList(s) {
		p := Path(strings.ToLower(f))
		if !slices.Contains(AllPaths, p) {
			return nil, fmt.Errorf("bench: unknown path %q (want raw, batcher or engine)", f)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Case names of a bundle: its five graphs and the whole pipeline.
const (
	CasePipeline = "pipeline"
)

// Config configures Run. The zero value is not enough: Bundle or Graph
// must be set. Zero fields take the documented defaults.
type Config struct {
	// Bundle is a model bundle folder: each of its graphs and the recommend pipeline are
	// measured (see Cases).
	Bundle string
	// Graph is a single .onnx file measured on its own (raw and batcher paths) instead of a
	// bundle. Dimension 0 of every input is the batch.
	Graph string
	// Shapes gives, per input name of Graph, the per-sample shape (batch dimension left out)
	// to use where the graph's dimensions are symbolic; unlisted symbolic dimensions are 16.
	Shapes map[string][]int64

	// Providers are measured in order (default [cpu]). CUDA, when unusable, is reported with
	// the reason and skipped.
	Providers []ort.Provider
	// Batches are the batch sizes (default 1, 8, 64, 256). For the concurrent paths the
	// batch size is the number of callers at once.
	Batches []int
	// Duration is the measured time of one point (default 2s), after Warmup.
	Duration time.Duration
	// Warmup is the untimed run of each point before it is measured (default Duration/5); every
	// caller makes at least one warm-up call, so that the first batch of a shape (and, on
	// CUDA, its kernel selection) is not timed.
	Warmup time.Duration
	// MinCalls is the fewest timed raw calls of one point (default 3), so that slow large
	// batches still give more than one latency.
	MinCalls int
	// Cases selects what is measured, by name (default: text_encoder, image_encoder,
	// audio_encoder, fusion, generator, pipeline; with Graph: the graph's file name).
	Cases []string
	// Paths selects the paths (default raw, batcher, engine).
	Paths []Path
	// Runtime holds the ONNX Runtime library, thread and device settings shared by every
	// provider; its Provider field is ignored.
	Runtime ort.Options
	// Batch configures the batcher path's and the engine's dynamic batching (default: the
	// engine's defaults, MaxWait 500µs). The batcher path's MaxBatch is the point's batch
	// size, so that a batch runs as soon as every caller has submitted (batching's mechanics
	// without its wait); the engine's is the largest of Batches, at least 64 (its default),
	// so that the engine path shows the engine's policy, waits included.
	Batch batch.Config
	// Seed makes inputs reproducible (default 1).
	Seed uint64
	// Progress receives one line per point as the run goes; nil writes nothing.
	Progress io.Writer
	// Logger receives the engine's load-time logs; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if len(c.Providers) == 0 {
		c.Providers = []ort.Provider{ort.ProviderCPU}
	}
	if len(c.Batches) == 0 {
		c.Batches = []int{1, 8, 64, 256}
	}
	if c.Duration <= 0 {
		c.Duration = 2 * time.Second
	}
	if c.Warmup <= 0 {
		c.Warmup = c.Duration / 5
	}
	if c.MinCalls <= 0 {
		c.MinCalls = 3
	}
	if len(c.Paths) == 0 {
		c.Paths = AllPaths
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

func (c Config) validate() error {
	if (c.Bundle == "") == (c.Graph == "") {
		return errors.New("bench: give a bundle folder or a single graph, not both and not neither")
	}
	for _, b := range c.Batches {
		if b < 1 || b > 1<<16 {
			return fmt.Errorf("bench: batch size %d: want 1 to 65536", b)
		}
	}
	for _, p := range c.Providers {
		if p != ort.ProviderCPU && p != ort.ProviderCUDA {
			return fmt.Errorf("bench: provider %q: want cpu or cuda", p)
		}
	}
	return nil
}

// Report is the result of Run.
type Report struct {
	report.Run          // kind "throughput"
	ONNXRuntime string  `json:"onnxruntime"`
	Library     string  `json:"onnxruntime_library"`
	Bundle      string  `json:"bundle,omitempty"`
	BundleName  string  `json:"bundle_name,omitempty"`
	Graph       string  `json:"graph,omitempty"`
	DurationS   float64 `json:"duration_s"` // per point
	Batches     []int   `json:"batches"`
	// Providers says, for each provider asked for, whether it was usable and why.
	Providers []ort.ProviderStatus `json:"providers"`
	// Inputs describes one sample of each case.
	Inputs map[string]string `json:"inputs"`
	// Notes explains paths that differ from the general rule, per case.
	Notes  map[string]string `json:"notes,omitempty"`
	Points []Point           `json:"points"`
	// Ratios are CUDA samples/s over CPU samples/s, for every point measured on both.
	Ratios []Ratio `json:"cuda_cpu_ratios,omitempty"`
}

// Point is one measurement: a case on a provider through a path at a batch size.
type Point struct {
	Case     string       `json:"case"`
	Provider ort.Provider `json:"provider"`
	Path     Path         `json:"path"`
	Batch    int          `json:"batch"`
	// Workers is the number of callers at once: 1 for raw, Batch otherwise.
	Workers int `json:"workers"`
	// Calls is the number of timed calls; Samples the samples they carried.
	Calls   int     `json:"calls"`
	Samples int     `json:"samples"`
	Seconds float64 `json:"seconds"`
	// SamplesPerSec is Samples / Seconds.
	SamplesPerSec float64 `json:"samples_per_s"`
	// Latency is per call: one raw batch, or one caller's one sample.
	Latency report.Summary `json:"latency"`
	// MeanRows is the mean batch size the graph actually ran with (0 when not observed).
	MeanRows float64 `json:"mean_rows,omitempty"`
	// VsRaw is SamplesPerSec over the raw path's at the same case, provider and batch.
	VsRaw float64 `json:"vs_raw,omitempty"`
	// Error is set when the point could not be measured (e.g. out of device memory).
	Error string `json:"error,omitempty"`
}

// Ratio compares CUDA with CPU for one case, path and batch.
type Ratio struct {
	Case  string  `json:"case"`
	Path  Path    `json:"path"`
	Batch int     `json:"batch"`
	CUDA  float64 `json:"cuda_samples_per_s"`
	CPU   float64 `json:"cpu_samples_per_s"`
	Ratio float64 `json:"ratio"`
}

// target is one measured thing (a graph or the pipeline) on one runtime.
type target struct {
	name  string
	paths map[Path]preparer
}

// preparer builds what one point needs for a batch size.
type preparer func(batch int) (*pointRun, error)

// pointRun is one point ready to measure: workers callers each calling call repeatedly.
type pointRun struct {
	workers int // callers at once
	perCall int // samples one call carries
	call    func(worker int) error
	// rows reports the graph rows and runs counted so far; nil when every run has perCall
	// rows.
	rows  func() (rows, runs int64)
	close func() error
}

// rig builds the targets of one runtime and releases what they hold.
type rig interface {
	targets() []target
	inputs() map[string]string
	notes() map[string]string
	Close() error
}

// Run measures every selected case, path, provider and batch size.
func Run(cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rep := &Report{Run: report.NewRun("throughput", time.Now()),
		Bundle: cfg.Bundle, Graph: cfg.Graph, DurationS: cfg.Duration.Seconds(), Batches: cfg.Batches,
		Inputs: map[string]string{}, Notes: map[string]string{}}
	if cfg.Bundle != "" {
		if err := report.BundleReady(cfg.Bundle); err != nil {
			return nil, err
		}
	}
	for _, p := range cfg.Providers {
		opts := cfg.Runtime
		opts.Provider = p
		if opts.Logger == nil {
			opts.Logger = cfg.Logger
		}
		rt, err := ort.Open(opts)
		if errors.Is(err, ort.ErrCUDAUnusable) {
			reason := strings.TrimPrefix(err.Error(), ort.ErrCUDAUnusable.Error()+": ")
			rep.Providers = append(rep.Providers, ort.ProviderStatus{Name: p, Reason: reason})
			report.Progressf(cfg.Progress, "bench: cuda unusable, measuring the other providers only: %s", reason)
			continue
		}
		if err != nil {
			return nil, err
		}
		rep.ONNXRuntime, rep.Library = rt.Version(), rt.LibraryPath()
		status := ort.ProviderStatus{Name: p, Usable: true, Reason: rt.Reason()}
		rep.Providers = append(rep.Providers, status)
		err = measureProvider(cfg, rt, rep)
		err = errors.Join(err, rt.Close())
		if err != nil {
			return nil, err
		}
	}
	if !slices.ContainsFunc(rep.Providers, func(p ort.ProviderStatus) bool { return p.Usable }) {
		return nil, fmt.Errorf("bench: no provider could be measured (cuda: %s)", rep.Providers[0].Reason)
	}
	rep.finish()
	return rep, nil
}

func measureProvider(cfg Config, rt *ort.Runtime, rep *Report) (err error) {
	var r rig
	if cfg.Bundle != "" {
		r, err = newBundleRig(cfg, rt)
	} else {
		r, err = newGraphRig(cfg, rt)
	}
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, r.Close()) }()
	if rep.BundleName == "" {
		if br, ok := r.(*bundleRig); ok {
			rep.BundleName = br.m.Name + "/" + br.m.Version
		}
	}
	for k, v := range r.inputs() {
		rep.Inputs[k] = v
	}
	for k, v := range r.notes() {
		rep.Notes[k] = v
	}
	targets := r.targets()
	if len(cfg.Cases) > 0 {
		have := targetNames(targets)
		for _, c := range cfg.Cases {
			if !slices.Contains(have, c) {
				return fmt.Errorf("bench: no case %q (have %s)", c, strings.Join(have, ", "))
			}
		}
		targets = slices.DeleteFunc(targets, func(t target) bool { return !slices.Contains(cfg.Cases, t.name) })
	}
	total, done := 0, 0
	for _, t := range targets {
		for _, p := range cfg.Paths {
			if t.paths[p] != nil {
				total += len(cfg.Batches)
			}
		}
	}
	for _, t := range targets {
		for _, b := range cfg.Batches {
			for _, p := range cfg.Paths {
				prep := t.paths[p]
				if prep == nil {
					continue
				}
				pt := measurePoint(prep, b, cfg.Warmup, cfg.Duration, cfg.MinCalls)
				pt.Case, pt.Provider, pt.Path = t.name, rt.Provider(), p
				rep.Points = append(rep.Points, pt)
				done++
				if pt.Error != "" {
					report.Progressf(cfg.Progress, "bench: [%d/%d] %s %s %s b=%d: error: %s", done, total, pt.Provider, pt.Case, pt.Path, pt.Batch, pt.Error)
				} else {
					report.Progressf(cfg.Progress, "bench: [%d/%d] %s %s %s b=%d: %.1f samples/s, p50 %.2f ms, p99 %.2f ms",
						done, total, pt.Provider, pt.Case, pt.Path, pt.Batch, pt.SamplesPerSec, pt.Latency.P50, pt.Latency.P99)
				}
			}
		}
	}
	return nil
}

func targetNames(ts []target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.name
	}
	return out
}

// measurePoint prepares, warms up and times one point. Errors are recorded in the point.
func measurePoint(prep preparer, b int, warmup, d time.Duration, minCalls int) Point {
	pt := Point{Batch: b}
	pr, err := prep(b)
	if err != nil {
		pt.Error = err.Error()
		return pt
	}
	defer func() {
		if pr.close != nil {
			if err := pr.close(); err != nil && pt.Error == "" {
				pt.Error = err.Error()
			}
		}
	}()
	pt.Workers = pr.workers
	if _, _, err := runWorkers(pr, warmup, 1); err != nil {
		pt.Error = "warm-up: " + err.Error()
		return pt
	}
	var rows0, runs0 int64
	if pr.rows != nil {
		rows0, runs0 = pr.rows()
	}
	minPerWorker := 1
	if pr.workers == 1 {
		minPerWorker = minCalls
	}
	lat, elapsed, err := runWorkers(pr, d, minPerWorker)
	if err != nil {
		pt.Error = err.Error()
	}
	pt.Calls = len(lat)
	pt.Samples = pt.Calls * pr.perCall
	pt.Seconds = elapsed.Seconds()
	if pt.Seconds > 0 {
		pt.SamplesPerSec = float64(pt.Samples) / pt.Seconds
	}
	pt.Latency = report.Summarize(lat)
	if pr.rows != nil {
		rows1, runs1 := pr.rows()
		if runs1 > runs0 {
			pt.MeanRows = float64(rows1-rows0) / float64(runs1-runs0)
		}
	} else {
		pt.MeanRows = float64(pr.perCall)
	}
	return pt
}

// runWorkers runs pr.workers callers at once; each calls until d has passed since the start
// and it has made at least minCalls calls. It returns every call's latency and the time from
// the start until the last caller finished. The first error stops every caller.
func runWorkers(pr *pointRun, d time.Duration, minCalls int) ([]time.Duration, time.Duration, error) {
	lat := make([][]time.Duration, pr.workers) // one slice per caller, merged at the end
	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < pr.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				if n >= minCalls && !time.Now().Before(deadline) {
					return
				}
				t0 := time.Now()
				if err := pr.call(w); err != nil {
					errOnce.Do(func() { firstErr = err })
					stop.Store(true)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	return slices.Concat(lat...), time.Since(start), firstErr
}

// finish computes the ratios to raw and between providers.
func (rep *Report) finish() {
	type key struct {
		c    string
		p    ort.Provider
		path Path
		b    int
	}
	idx := map[key]*Point{}
	for i := range rep.Points {
		pt := &rep.Points[i]
		if pt.Error == "" {
			idx[key{pt.Case, pt.Provider, pt.Path, pt.Batch}] = pt
		}
	}
	for i := range rep.Points {
		pt := &rep.Points[i]
		if raw := idx[key{pt.Case, pt.Provider, PathRaw, pt.Batch}]; raw != nil && pt.Error == "" && raw.SamplesPerSec > 0 {
			pt.VsRaw = pt.SamplesPerSec / raw.SamplesPerSec
		}
	}
	for _, pt := range rep.Points {
		if pt.Provider != ort.ProviderCUDA || pt.Error != "" {
			continue
		}
		cpu := idx[key{pt.Case, ort.ProviderCPU, pt.Path, pt.Batch}]
		if cpu == nil || cpu.SamplesPerSec <= 0 {
			continue
		}
		rep.Ratios = append(rep.Ratios, Ratio{Case: pt.Case, Path: pt.Path, Batch: pt.Batch,
			CUDA: pt.SamplesPerSec, CPU: cpu.SamplesPerSec, Ratio: pt.SamplesPerSec / cpu.SamplesPerSec})
	}
}

// counters counts the rows and runs of a graph, for the mean batch size a path achieved.
type counters struct{ rows, runs atomic.Int64 }

func (c *counters) observe(rows int) {
	c.rows.Add(int64(rows))
	c.runs.Add(1)
}

func (c *counters) get() (int64, int64) { return c.rows.Load(), c.runs.Load() }

// ParseShape reads NAME=D1xD2... (the per-sample shape of one input of a lone graph, batch
// dimension left out; "NAME=" is a rank-1 input) into shapes.
func ParseShape(s string, shapes map[string][]int64) error {
	name, dims, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("bench: shape %q: want NAME=D1xD2...", s)
	}
	shape := []int64{}
	if dims != "" {
		for _, d := range strings.Split(dims, "x") {
			n, err := strconv.ParseInt(d, 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("bench: shape %q: dimension %q is not a non-negative integer", s, d)
			}
			shape = append(shape, n)
		}
	}
	shapes[name] = shape
	return nil
}

package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/eval"
)

// File names written by the quality bench.
const (
	QualityJSON = "quality.json"
	QualityPlot = "quality.png"
)

// ExportAlpha is the IPS strength of the export's own evaluation: it ranks by the generator's
// logits with no reweighting, so the Go engine is compared with it at alpha 0.
const ExportAlpha = 0.0

// NDCGTolerance is how far the engine's NDCG@10 may be from the export's at ExportAlpha.
const NDCGTolerance = 0.002

// Row names of the quality report, the export's names.
const (
	RowModel       = "model"
	RowMostPopular = "most_popular"
	RowItemKNN     = "item_knn"
)

// QualityConfig configures RunQuality. Bundle and Data are required; zero fields take the
// documented defaults.
type QualityConfig struct {
	// Bundle is the model bundle folder; Data a generic-format dataset or a raw
	// MovieLens-100K folder (the data the bundle was trained on, for a meaningful comparison).
	Bundle, Data string
	// Alphas are the IPS strengths the model is evaluated at (default 0, 0.5, 1). ExportAlpha
	// is added first when missing, for the comparison with the export.
	Alphas []float64
	// Users limits the evaluation to the first Users users (by id) with a held-out item; 0
	// means all. The export compares over all users.
	Users int
	// Workers is how many recommendations are in flight at once (default 32), so that the
	// engine batches fusion and the generator's first step across them.
	Workers int
	// Runtime selects ONNX Runtime's library, provider and threads (default provider auto).
	Runtime ort.Options
	// Batch is the engine's batching (default: the engine's, MaxBatch 64; the queues hold at
	// least Workers requests).
	Batch batch.Config
	// NoSteering skips the steering evaluation (RunSteering) that runs by default when the
	// bundle's manifest has a steering section.
	NoSteering bool
	// Progress receives a line per evaluated row; nil writes nothing.
	Progress io.Writer
	// Logger receives the engine's load-time logs; nil discards them.
	Logger *slog.Logger
}

func (c QualityConfig) withDefaults() QualityConfig {
	if len(c.Alphas) == 0 {
		c.Alphas = []float64{0, 0.5, 1}
	}
	if !slices.Contains(c.Alphas, ExportAlpha) {
		c.Alphas = append([]float64{ExportAlpha}, c.Alphas...)
	}
	if c.Workers <= 0 {
		c.Workers = 32
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c.Batch.QueueSize = max(c.Batch.QueueSize, 1024, 2*c.Workers)
	return c
}

// QualityRow is one evaluated ranker.
type QualityRow struct {
	Name string `json:"name"`
	// Alpha is the IPS strength of the model's rows (nil for baselines).
	Alpha *float64 `json:"ips_alpha,omitempty"`
	eval.Metrics
	// Seconds is the time the row took; UsersPerSec its rate.
	Seconds     float64 `json:"seconds"`
	UsersPerSec float64 `json:"users_per_s"`
}

// MetricDiff is one metric of a row beside the export's.
type MetricDiff struct {
	Row    string  `json:"row"`
	Metric string  `json:"metric"`
	Go     float64 `json:"go"`
	Export float64 `json:"export"`
	Diff   float64 `json:"diff"`
}

// QualityReport is the result of RunQuality.
type QualityReport struct {
	Kind          string `json:"kind"` // "quality"
	Started       string `json:"started"`
	Host          Host   `json:"host"`
	Bundle        string `json:"bundle"`
	BundleName    string `json:"bundle_name"`
	BundleVersion string `json:"bundle_version"`
	Provider      string `json:"provider"`
	Data          string `json:"data"`
	// DataMatches says whether the data is what the bundle was trained on (fingerprint of a
	// generic folder, else users, items and interactions counts); DataNote says how it was
	// decided.
	DataMatches bool   `json:"data_matches_bundle"`
	DataNote    string `json:"data_note"`
	Protocol    string `json:"protocol"`
	// Propensities says where the IPS propensities came from.
	Propensities string `json:"propensities"`
	// Embeddings says which item embeddings diversity uses.
	Embeddings string `json:"ild_embeddings"`
	// AllUsers is false when --users limited the evaluation.
	AllUsers bool         `json:"all_users"`
	Rows     []QualityRow `json:"rows"`
	// Export holds the export's metrics (ExportSource: report.json or manifest.json).
	Export       map[string]eval.Metrics `json:"export,omitempty"`
	ExportSource string                  `json:"export_source,omitempty"`
	Compare      []MetricDiff            `json:"compare,omitempty"`
	// Steering is how requests steer the lists (RunSteering), nil when the bundle has no
	// steering section or NoSteering was set.
	Steering *SteeringReport `json:"steering,omitempty"`
	// NDCGDiff is the model's NDCG@10 at ExportAlpha minus the export's; NDCGMet says
	// whether |NDCGDiff| <= NDCGTolerance.
	NDCGDiff      *float64           `json:"ndcg_diff,omitempty"`
	NDCGTolerance float64            `json:"ndcg_tolerance"`
	NDCGMet       *bool              `json:"ndcg_met,omitempty"`
	Notes         []string           `json:"notes,omitempty"`
	Timings       map[string]float64 `json:"timings_s"`
}

// Row returns the report's row of that name (and alpha, for the model), or nil.
func (rep *QualityReport) Row(name string, alpha float64) *QualityRow {
	for i, r := range rep.Rows {
		if r.Name == name && (r.Alpha == nil || *r.Alpha == alpha) {
			return &rep.Rows[i]
		}
	}
	return nil
}

// evalSet is what every ranker of one run is evaluated on.
type evalSet struct {
	users   []eval.SplitUser // evaluated users (each with a held-out item)
	all     []eval.SplitUser // every user of the split (baselines train on them)
	n       int
	pop     []float64 // training popularity: training interactions / users
	counts  []float64
	targets []int
	gender  []string
	age     []string
	emb     []float32
	dim     int
}

func (s *evalSet) metrics(tops [][]int) eval.Metrics {
	return eval.ListMetrics(tops, s.targets, s.emb, s.dim, s.pop, s.gender, s.age)
}

// RunQuality evaluates the bundle through the engine on data: full-ranking leave-one-out by
// time, the model at every IPS strength of cfg.Alphas, most-popular and item-kNN baselines on
// the same split, and compares with the export's report.
func RunQuality(ctx context.Context, cfg QualityConfig) (rep *QualityReport, err error) {
	cfg = cfg.withDefaults()
	if cfg.Bundle == "" || cfg.Data == "" {
		return nil, errors.New("bench: quality needs a bundle and a dataset")
	}
	start := time.Now()
	rep = &QualityReport{Kind: "quality", Started: start.UTC().Format(time.RFC3339), Host: thisHost(), Bundle: cfg.Bundle,
		NDCGTolerance: NDCGTolerance, Timings: map[string]float64{}}
	progress := newProgress(cfg.Progress)
	env, err := openEvalEnv(cfg.Bundle, cfg.Data, cfg.Runtime, cfg.Batch, cfg.Logger, recommend.Config{})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, env.Close()) }()
	eng, m := env.eng, env.eng.Manifest()
	rep.BundleName, rep.BundleVersion, rep.Provider = m.Name, m.Version, string(env.rt.Provider())
	rep.Data = env.data.Source
	rep.DataMatches, rep.DataNote = env.matches, env.matchNote
	rep.Notes = append(rep.Notes, env.notes...)
	rep.Timings["load"] = time.Since(start).Seconds()

	set := env.set
	if cfg.Users > 0 && cfg.Users < len(set.users) {
		set.users = set.users[:cfg.Users]
		set.targets, set.gender, set.age = set.targets[:cfg.Users], set.gender[:cfg.Users], set.age[:cfg.Users]
	}
	rep.AllUsers = len(set.users) == len(env.set.users)
	rep.Protocol = fmt.Sprintf("leave-one-out by time (ties by item id); history = training + validation items; full ranking "+
		"of the catalog minus the history; k=%d; %d users with a held-out item", eval.K, len(set.users))
	rep.Propensities = env.propensities
	rep.Embeddings = "the bundle's item_embeddings.f32: the content embeddings the export's ILD uses"

	for _, alpha := range cfg.Alphas {
		t0 := time.Now()
		tops, err := modelTops(ctx, eng, set.users, alpha, cfg.Workers)
		if err != nil {
			return nil, err
		}
		a := alpha
		rep.Rows = append(rep.Rows, finishRow(QualityRow{Name: RowModel, Alpha: &a, Metrics: set.metrics(tops)}, t0))
		progress.printf("quality: model at alpha %g: %d users in %.1fs", alpha, len(tops), time.Since(t0).Seconds())
	}
	t0 := time.Now()
	tops := eval.MostPopular(set.users, set.counts, eval.K)
	rep.Rows = append(rep.Rows, finishRow(QualityRow{Name: RowMostPopular, Metrics: set.metrics(tops)}, t0))
	progress.printf("quality: most popular in %.1fs", time.Since(t0).Seconds())
	t0 = time.Now()
	tops = eval.NewItemKNNOf(set.all, set.n).Tops(set.users, eval.K)
	rep.Rows = append(rep.Rows, finishRow(QualityRow{Name: RowItemKNN, Metrics: set.metrics(tops)}, t0))
	progress.printf("quality: item-kNN in %.1fs", time.Since(t0).Seconds())

	switch {
	case cfg.NoSteering: // skipped on request
	case m.Steering == nil:
		rep.Notes = append(rep.Notes, "the bundle has no steering section")
	default:
		if rep.Steering, err = RunSteering(ctx, eng, set.users, m.Steering, cfg.Workers, SteeringSeed); err != nil {
			return nil, err
		}
		rep.Steering.Export = exportSteering(cfg.Bundle)
		rep.Timings["steering"] = rep.Steering.Seconds
		progress.printf("quality: steering in %.1fs", rep.Steering.Seconds)
	}

	rep.Export, rep.ExportSource = exportMetrics(cfg.Bundle, m)
	rep.compare()
	if !rep.AllUsers && rep.NDCGDiff != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("only %d of %d users evaluated: the comparison with the export (all users) is indicative only",
			len(set.users), len(env.set.users)))
	}
	rep.Timings["total"] = time.Since(start).Seconds()
	return rep, nil
}

func finishRow(r QualityRow, t0 time.Time) QualityRow {
	r.Seconds = time.Since(t0).Seconds()
	if r.Seconds > 0 {
		r.UsersPerSec = float64(r.Users) / r.Seconds
	}
	return r
}

// modelTops asks the engine for every user's top-K list (history: training + validation,
// seen items excluded) at IPS strength alpha, workers requests at once.
func modelTops(ctx context.Context, eng *recommend.Engine, users []eval.SplitUser, alpha float64, workers int) ([][]int, error) {
	items := eng.Items()
	tops := make([][]int, len(users))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				u := int(next.Add(1)) - 1
				if u >= len(users) || ctx.Err() != nil {
					return
				}
				hist := users[u].TestHistory()
				ids := make([]string, len(hist))
				for i, r := range hist {
					ids[i] = items[r].ID
				}
				a := alpha
				resp, err := eng.Recommend(ctx, recommend.Request{History: ids, K: eval.K, ExcludeSeen: true, Alpha: &a})
				if err != nil {
					errs[w] = fmt.Errorf("bench: recommend for user %s: %w", users[u].ID, err)
					next.Store(int64(len(users)))
					return
				}
				top := make([]int, len(resp.Items))
				for i, it := range resp.Items {
					top[i], _ = eng.Row(it.ItemID)
				}
				tops[u] = top
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return tops, ctx.Err()
}

// evalEnv is an engine opened on a bundle with the data split over its catalog.
type evalEnv struct {
	rt           *ort.Runtime
	eng          *recommend.Engine
	data         *eval.Dataset
	set          evalSet
	matches      bool
	matchNote    string
	fingerprint  string // of a generic data folder
	propensities string
	notes        []string
}

func (e *evalEnv) Close() error {
	var errs []error
	if e.eng != nil {
		errs = append(errs, e.eng.Close())
	}
	if e.rt != nil {
		errs = append(errs, e.rt.Close())
	}
	return errors.Join(errs...)
}

// openEvalEnv loads the data, opens the engine (ecfg's Batch, MaxHistory and Logger are set
// here) and splits the data over the engine's catalog. When the bundle ships no training
// counts, the engine's popularity is seeded with the split's training counts so that IPS
// reweights by them.
func openEvalEnv(bundleDir, dataDir string, rto ort.Options, bc batch.Config, logger *slog.Logger, ecfg recommend.Config) (env *evalEnv, err error) {
	if err := BundleReady(bundleDir); err != nil {
		return nil, err
	}
	data, err := eval.Load(dataDir)
	if err != nil {
		return nil, err
	}
	env = &evalEnv{data: data}
	opened := env // a failing return sets env to nil before this runs
	defer func() {
		if err != nil {
			err = errors.Join(err, opened.Close())
			env = nil
		}
	}()
	if rto.Logger == nil {
		rto.Logger = logger
	}
	if env.rt, err = ort.Open(rto); err != nil {
		return nil, err
	}
	longest := 0
	for _, u := range data.Users {
		longest = max(longest, len(u.Items))
	}
	ecfg.Batch, ecfg.Logger = bc, logger
	ecfg.MaxHistory = max(1000, longest)
	if env.eng, err = recommend.Open(bundleDir, env.rt, ecfg); err != nil {
		return nil, err
	}
	m := env.eng.Manifest()
	all, dropped := data.Split(env.eng.Row)
	if dropped > 0 {
		env.notes = append(env.notes, fmt.Sprintf("%d interactions on items outside the bundle's catalog were dropped", dropped))
	}
	n := len(env.eng.Items())
	set := evalSet{all: all, n: n, dim: m.EmbeddingDim}
	set.counts = eval.TrainCounts(all, n)
	set.pop = eval.Popularity(set.counts, len(all))
	for _, u := range all {
		if u.Test >= 0 {
			set.users = append(set.users, u)
			set.targets = append(set.targets, u.Test)
			set.gender = append(set.gender, u.Gender)
			set.age = append(set.age, u.AgeBand)
		}
	}
	if len(set.users) == 0 {
		return nil, fmt.Errorf("bench: %s: no user has the three interactions a held-out item needs", dataDir)
	}
	if set.emb, err = readEmbeddings(filepath.Join(bundleDir, m.Items.Embeddings), n*m.EmbeddingDim); err != nil {
		return nil, err
	}
	env.set = set
	stats := env.eng.Stats()
	var shipped float64
	for i := 0; i < n; i++ {
		shipped += stats.Count(i)
	}
	pc := stats.Config()
	if shipped > 0 {
		env.propensities = fmt.Sprintf("the bundle's training counts (%.0f interactions), smoothing %g, clip %g", shipped, pc.Smoothing, pc.ClipMin)
	} else {
		for i, c := range set.counts {
			stats.Seed(i, c)
		}
		env.propensities = fmt.Sprintf("the split's training counts seeded into the engine's live popularity (the bundle ships none), "+
			"smoothing %g, clip %g", pc.Smoothing, pc.ClipMin)
	}
	if data.Generic {
		if env.fingerprint, err = eval.Fingerprint(dataDir); err != nil {
			return nil, err
		}
	}
	env.matches, env.matchNote = dataMatchesBundle(data, all, m, env.fingerprint)
	if !env.matches {
		env.notes = append(env.notes, "the data differs from the bundle's training data: "+env.matchNote)
	}
	return env, nil
}

// dataMatchesBundle compares the data with the manifest's "data" section: the fingerprint fp
// of a generic folder, else the counts of users, items and interactions.
func dataMatchesBundle(d *eval.Dataset, users []eval.SplitUser, m *bundle.Manifest, fp string) (bool, string) {
	md := m.Data
	if md.Fingerprint == "" && md.Users == 0 {
		return false, "the manifest has no data section"
	}
	inter := 0
	for _, u := range users {
		inter += len(u.Train)
		if u.Val >= 0 {
			inter += 2
		}
	}
	if fp != "" && md.Fingerprint != "" {
		if fp == md.Fingerprint {
			return true, "fingerprint " + fp[:12] + " equals the manifest's"
		}
		return false, fmt.Sprintf("fingerprint %s, the manifest's %s", fp[:12], md.Fingerprint[:min(12, len(md.Fingerprint))])
	}
	same := len(users) == md.Users && len(d.Items) == md.Items && inter == md.Interactions
	note := fmt.Sprintf("%d users, %d items, %d interactions; the manifest's %d, %d, %d (raw folder: counts compared, not fingerprinted)",
		len(users), len(d.Items), inter, md.Users, md.Items, md.Interactions)
	return same, note
}

func readEmbeddings(path string, n int) ([]float32, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if len(raw) != 4*n {
		return nil, fmt.Errorf("bench: %s: %d bytes, want %d", path, len(raw), 4*n)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out, nil
}

// exportMetrics reads the export's metrics: report.json's when present (with groups), else
// the manifest's.
func exportMetrics(dir string, m *bundle.Manifest) (map[string]eval.Metrics, string) {
	var rep struct {
		Metrics map[string]eval.Metrics `json:"metrics"`
	}
	if raw, err := os.ReadFile(filepath.Join(dir, "report.json")); err == nil && json.Unmarshal(raw, &rep) == nil && len(rep.Metrics) > 0 {
		// the model's row is the mean over seeds; the served weights' own figures are under
		// metrics.model.exported, which is what the engine reproduces
		var served struct {
			Metrics struct {
				Model struct {
					Exported *eval.Metrics `json:"exported"`
				} `json:"model"`
			} `json:"metrics"`
		}
		if json.Unmarshal(raw, &served) == nil && served.Metrics.Model.Exported != nil {
			rep.Metrics[RowModel] = *served.Metrics.Model.Exported
			return rep.Metrics, "report.json (the exported seed's own figures for the model)"
		}
		return rep.Metrics, "report.json"
	}
	var mm map[string]eval.Metrics
	if len(m.Metrics) > 0 && json.Unmarshal(m.Metrics, &mm) == nil && len(mm) > 0 {
		return mm, "manifest.json"
	}
	return nil, ""
}

// ParseFloats reads a comma-separated list of IPS strengths, each within [0, 10] (the
// engine's range).
func ParseFloats(s string) ([]float64, error) {
	var out []float64
	for _, f := range splitList(s) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 10 {
			return nil, fmt.Errorf("bench: %q is not a number within [0, 10]", f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("bench: empty list")
	}
	return out, nil
}

// Package evaluate is `llm4rec bench quality` and `bench online`: it evaluates a bundle
// through the engine with the export's protocol, which package eval implements (loading,
// split, top-k, metrics, baselines, the prequential replay, steering): offline quality at
// several IPS strengths beside the baselines and the export's figures, how typed and spoken
// requests steer the lists, and the online learner replayed on held-out interactions.
package evaluate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/engine/batch"
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
	engineDefaults(&c.Workers, &c.Logger, &c.Batch)
	return c
}

// engineDefaults fills the settings every evaluation through the engine shares: 32 requests in
// flight, logs discarded, batcher queues that hold at least twice the requests in flight.
func engineDefaults(workers *int, logger **slog.Logger, b *batch.Config) {
	if *workers <= 0 {
		*workers = 32
	}
	if *logger == nil {
		*logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b.QueueSize = max(b.QueueSize, 1024, 2**workers)
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
	report.Run           // kind "quality"
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

// RunQuality evaluates the bundle through the engine on data: full-ranking leave-one-out by
// time, the model at every IPS strength of cfg.Alphas, most-popular and item-kNN baselines on
// the same split, and compares with the export's report.
func RunQuality(ctx context.Context, cfg QualityConfig) (rep *QualityReport, err error) {
	cfg = cfg.withDefaults()
	if cfg.Bundle == "" || cfg.Data == "" {
		return nil, errors.New("bench: quality needs a bundle and a dataset")
	}
	start := time.Now()
	rep = &QualityReport{Run: report.NewRun("quality", start), Bundle: cfg.Bundle,
		NDCGTolerance: NDCGTolerance, Timings: map[string]float64{}}
	env, err := openEnv(cfg.Bundle, cfg.Data, cfg.Runtime, recommend.Config{Batch: cfg.Batch, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, env.Close()) }()
	eng, m := env.Engine, env.Engine.Manifest()
	rep.BundleName, rep.BundleVersion, rep.Provider = m.Name, m.Version, string(env.Runtime.Provider())
	rep.Data, rep.DataMatches, rep.DataNote = env.Data.Source, env.Matches, env.MatchNote
	rep.Notes = append(rep.Notes, env.Notes...)
	rep.Timings["load"] = time.Since(start).Seconds()

	users := env.Users
	if cfg.Users > 0 && cfg.Users < len(users) {
		users = users[:cfg.Users]
	}
	rep.AllUsers = len(users) == len(env.Users)
	rep.Protocol = fmt.Sprintf("leave-one-out by time (ties by item id); history = training + validation items; full ranking "+
		"of the catalog minus the history; k=%d; %d users with a held-out item", eval.K, len(users))
	rep.Propensities = env.Propensities
	rep.Embeddings = "the bundle's item_embeddings.f32: the content embeddings the export's ILD uses"

	row := func(name string, alpha *float64, tops [][]int, t0 time.Time) {
		r := QualityRow{Name: name, Alpha: alpha, Metrics: env.Metrics(users, tops), Seconds: time.Since(t0).Seconds()}
		if r.Seconds > 0 {
			r.UsersPerSec = float64(r.Users) / r.Seconds
		}
		rep.Rows = append(rep.Rows, r)
		if alpha != nil {
			name += " at alpha " + fmtAlpha(alpha)
		}
		report.Progressf(cfg.Progress, "quality: %s: %d users in %.1fs", name, len(tops), r.Seconds)
	}
	for _, alpha := range cfg.Alphas {
		t0 := time.Now()
		tops, err := eval.EngineTops(ctx, eng, users, alpha, cfg.Workers)
		if err != nil {
			return nil, err
		}
		row(RowModel, &alpha, tops, t0)
	}
	t0 := time.Now()
	row(RowMostPopular, nil, eval.MostPopular(users, env.Counts, eval.K), t0)
	t0 = time.Now()
	row(RowItemKNN, nil, eval.NewItemKNNOf(env.All, len(env.Counts)).Tops(users, eval.K), t0)

	switch {
	case cfg.NoSteering: // skipped on request
	case m.Steering == nil:
		rep.Notes = append(rep.Notes, "the bundle has no steering section")
	default:
		if rep.Steering, err = RunSteering(ctx, eng, users, m.Steering, cfg.Workers, SteeringSeed); err != nil {
			return nil, err
		}
		rep.Steering.Export = exportSteering(cfg.Bundle)
		rep.Timings["steering"] = rep.Steering.Seconds
		report.Progressf(cfg.Progress, "quality: steering in %.1fs", rep.Steering.Seconds)
	}

	rep.Export, rep.ExportSource = eval.ExportMetrics(cfg.Bundle, m)
	rep.compare()
	if !rep.AllUsers && rep.NDCGDiff != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("only %d of %d users evaluated: the comparison with the export (all users) is indicative only",
			len(users), len(env.Users)))
	}
	rep.Timings["total"] = time.Since(start).Seconds()
	return rep, nil
}

// openEnv checks the bundle and opens eval's environment on it with the bench's batching.
func openEnv(bundleDir, dataDir string, rto ort.Options, ecfg recommend.Config) (*eval.Env, error) {
	if err := report.BundleReady(bundleDir); err != nil {
		return nil, err
	}
	return eval.OpenEnv(bundleDir, dataDir, rto, ecfg)
}

// ParseFloats reads a comma-separated list of IPS strengths, each within [0, 10] (the
// engine's range).
func ParseFloats(s string) ([]float64, error) {
	return report.ParseList(s, func(f string) (float64, bool) {
		v, err := strconv.ParseFloat(f, 64)
		return v, err == nil && v >= 0 && v <= 10
	}, "a number within [0, 10]")
}

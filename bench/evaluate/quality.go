// Package evaluate is `llm4rec bench quality` and `bench online`: it evaluates a bundle
// through the engine with the export's protocol, which package eval implements (loading,
// split, top-k, metrics, baselines, bootstrap intervals, steering): offline quality at
// several IPS strengths beside the baselines and the export's figures, how typed and spoken
// requests steer the lists, and real-time learning on a temporal stream after a bundle's
// training cutoff (online.go).
package evaluate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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

// NDCGTolerance is how far the engine's NDCG@10 may be from the export's at ExportAlpha, and
// at the bundle's default alpha from the export's figures there (metrics.model_ips).
const NDCGTolerance = 0.002

// SweepAlphas are the IPS strengths the model is evaluated at by default, beside the bundle's
// default alpha (the manifest's ips.default_alpha).
var SweepAlphas = []float64{0, 0.1, 0.2, 0.3, 0.5, 1}

// Settings of the group figures (QualityReport.Groups), the export's names.
const (
	GroupsAlpha0  = "alpha 0"
	GroupsDefault = "default"
)

// Row names of the quality report, the export's names (RowModelIPS: the model at the bundle's
// default alpha in the comparison with the export, its metrics.model_ips).
const (
	RowModel       = "model"
	RowModelIPS    = "model_ips"
	RowMostPopular = "most_popular"
	RowItemKNN     = "item_knn"
)

// QualityConfig configures RunQuality. Bundle and Data are required; zero fields take the
// documented defaults.
type QualityConfig struct {
	// Bundle is the model bundle folder; Data a generic-format dataset or a raw
	// MovieLens-100K folder (the data the bundle was trained on, for a meaningful comparison).
	Bundle, Data string
	// Alphas are the IPS strengths the model is evaluated at (default: SweepAlphas and the
	// manifest's ips.default_alpha). ExportAlpha is added when missing, for the comparison
	// with the export; the model is evaluated at them in increasing order.
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
	// ExplainUsers is how many users the explanations section (RunExplanations) measures: the
	// first of the evaluated users with two history items or more (0: DefaultExplainUsers;
	// negative skips the section).
	ExplainUsers int
	// NoGroupCalibration skips the group calibration section (RunGroupCalibration; it ranks
	// the validation items at every strength of eval.CalibrationAlphas when the bundle has no
	// ips.group_alpha).
	NoGroupCalibration bool
	// Progress receives a line per evaluated row; nil writes nothing.
	Progress io.Writer
	// Logger receives the engine's load-time logs; nil discards them.
	Logger *slog.Logger
}

func (c QualityConfig) withDefaults() QualityConfig {
	engineDefaults(&c.Workers, &c.Logger, &c.Batch)
	if c.ExplainUsers == 0 {
		c.ExplainUsers = DefaultExplainUsers
	}
	return c
}

// QualityAlphas are the IPS strengths the model is evaluated at: given, else SweepAlphas and
// the bundle's default alpha def; ExportAlpha always; sorted, each once.
func QualityAlphas(given []float64, def float64) []float64 {
	a := slices.Clone(given)
	if len(a) == 0 {
		a = append(slices.Clone(SweepAlphas), def)
	}
	a = append(a, ExportAlpha)
	slices.Sort(a)
	return slices.Compact(a)
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

// SweepPoint is the model at one IPS strength: accuracy against exposure.
type SweepPoint struct {
	Alpha         float64 `json:"alpha"`
	NDCG          float64 `json:"ndcg@10"`
	ARP           float64 `json:"arp"`
	Coverage      float64 `json:"coverage@10"`
	LongTailShare float64 `json:"long_tail_share"`
	ExposureGini  float64 `json:"exposure_gini"`
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
	// Explanations is how faithful, how specific and how costly the engine's explanations are
	// (RunExplanations), nil when skipped (QualityConfig.ExplainUsers).
	Explanations *ExplanationsReport `json:"explanations,omitempty"`
	// ExplanationsAttention is the same section for an engine whose explanations take their
	// evidence from the fusion's attention (recommend.EvidenceAttention), beside the served
	// strategy when that is another: the cheap estimate against the measured one, same users.
	ExplanationsAttention *ExplanationsReport `json:"explanations_attention,omitempty"`
	// NDCGDiff is the model's NDCG@10 at ExportAlpha minus the export's; NDCGMet says
	// whether |NDCGDiff| <= NDCGTolerance.
	NDCGDiff      *float64 `json:"ndcg_diff,omitempty"`
	NDCGTolerance float64  `json:"ndcg_tolerance"`
	NDCGMet       *bool    `json:"ndcg_met,omitempty"`
	// DefaultAlpha is the bundle's default IPS strength (the manifest's ips.default_alpha,
	// chosen on validation users by the export).
	DefaultAlpha float64 `json:"default_alpha"`
	// IPSSweep is the model at every evaluated IPS strength, in increasing order.
	IPSSweep []SweepPoint `json:"ips_sweep"`
	// Groups are NDCG@10 and ARP by user group with bootstrap intervals and the gap between
	// the two largest groups, at alpha 0 (GroupsAlpha0) and at the default alpha
	// (GroupsDefault) when it was evaluated, each by "gender" and by "age" (band) when the
	// data has them.
	Groups map[string]map[string]*eval.GroupReport `json:"groups,omitempty"`
	// GroupCalibration is each user group corrected at its own strength against no correction
	// and the default, by attribute (RunGroupCalibration); nil when skipped or the data has no
	// groups.
	GroupCalibration map[string]*GroupCalibrationReport `json:"group_calibration,omitempty"`
	// IPSNDCGDiff is the model's NDCG@10 at DefaultAlpha minus the export's there
	// (metrics.model_ips.exported); IPSNDCGMet says whether it is within NDCGTolerance. nil
	// when the export's report has no such figures or DefaultAlpha was not evaluated.
	IPSNDCGDiff *float64           `json:"ips_ndcg_diff,omitempty"`
	IPSNDCGMet  *bool              `json:"ips_ndcg_met,omitempty"`
	Notes       []string           `json:"notes,omitempty"`
	Timings     map[string]float64 `json:"timings_s"`
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
// time, the model at every IPS strength of cfg.Alphas (QualityAlphas), most-popular and
// item-kNN baselines on the same split, NDCG@10 and ARP by user group with intervals at alpha 0
// and at the bundle's default alpha, how requests steer the lists (RunSteering), how faithful
// and costly the explanations are (RunExplanations), and compares with the export's report.
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
	rep.DefaultAlpha = m.IPS.DefaultAlpha
	alphas := QualityAlphas(cfg.Alphas, rep.DefaultAlpha)

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
	testTops := map[float64][][]int{}
	for _, alpha := range alphas {
		t0 := time.Now()
		tops, err := eval.EngineTops(ctx, eng, users, alpha, cfg.Workers)
		if err != nil {
			return nil, err
		}
		testTops[alpha] = tops
		row(RowModel, &alpha, tops, t0)
		if alpha == 0 || alpha == rep.DefaultAlpha {
			if g := groupFigures(users, tops, env.Popularity); g != nil {
				if rep.Groups == nil {
					rep.Groups = map[string]map[string]*eval.GroupReport{}
				}
				if alpha == 0 {
					rep.Groups[GroupsAlpha0] = g
				}
				if alpha == rep.DefaultAlpha {
					rep.Groups[GroupsDefault] = g
				}
			}
		}
	}
	rep.sweep()
	if rep.Groups == nil {
		rep.Notes = append(rep.Notes, "the data has no user groups with two values or more: no group figures")
	} else if !cfg.NoGroupCalibration {
		t0 := time.Now()
		if rep.GroupCalibration, err = RunGroupCalibration(ctx, env, users, rep.DefaultAlpha, eval.CalibrationAlphas, m.IPS.GroupAlpha, testTops,
			cfg.Workers, cfg.Progress); err != nil {
			return nil, err
		}
		rep.Timings["group_calibration"] = time.Since(t0).Seconds()
	}
	if !slices.Contains(alphas, rep.DefaultAlpha) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the bundle's default alpha %g was not evaluated (--alphas): no group figures or comparison with the export there",
			rep.DefaultAlpha))
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

	if cfg.ExplainUsers > 0 {
		if rep.Explanations, err = RunExplanations(ctx, env, users, cfg.ExplainUsers, cfg.Workers, cfg.Progress); err != nil {
			return nil, err
		}
		rep.Timings["explanations"] = rep.Explanations.Seconds
		report.Progressf(cfg.Progress, "quality: explanations in %.1fs", rep.Explanations.Seconds)
		if eng.ExplainEvidence() != recommend.EvidenceAttention {
			if rep.ExplanationsAttention, err = explanationsWith(ctx, env, cfg, users, recommend.EvidenceAttention); err != nil {
				return nil, err
			}
			rep.Timings["explanations_attention"] = rep.ExplanationsAttention.Seconds
		}
	}

	rep.Export, rep.ExportSource = eval.ExportMetrics(cfg.Bundle, m)
	if rep.Export != nil {
		delete(rep.Export, RowModelIPS) // the seeds' mean: the exported seed's own figures replace it below
		if ips := exportIPS(cfg.Bundle); ips != nil {
			rep.Export[RowModelIPS] = *ips
		}
	}
	rep.compare()
	if !rep.AllUsers && (rep.NDCGDiff != nil || rep.IPSNDCGDiff != nil) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("only %d of %d users evaluated: the comparison with the export (all users) is indicative only",
			len(users), len(env.Users)))
	}
	rep.Timings["total"] = time.Since(start).Seconds()
	return rep, nil
}

// groupFigures are the users' NDCG@10 and ARP by gender and by age band with intervals
// (eval.GroupIntervals) of lists tops; nil when the data has neither.
func groupFigures(users []eval.SplitUser, tops [][]int, pop []float64) map[string]*eval.GroupReport {
	targets, gender, age := make([]int, len(users)), make([]string, len(users)), make([]string, len(users))
	for i, u := range users {
		targets[i], gender[i], age[i] = u.Test, u.Gender, u.AgeBand
	}
	ndcg, arp := eval.PerUser(tops, targets, pop)
	out := map[string]*eval.GroupReport{}
	for key, g := range map[string][]string{"gender": gender, "age": age} {
		if r := eval.GroupIntervals(ndcg, arp, g, eval.GroupSeed, eval.Resamples); r != nil {
			out[key] = r
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// exportIPS reads the export's figures of the exported seed at the bundle's default alpha
// (report.json's metrics.model_ips.exported); nil when the report has none (bundles older
// than the popularity correction).
func exportIPS(dir string) *eval.Metrics {
	raw, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		return nil
	}
	var rep struct {
		Metrics struct {
			ModelIPS struct {
				Exported *eval.Metrics `json:"exported"`
			} `json:"model_ips"`
		} `json:"metrics"`
	}
	if json.Unmarshal(raw, &rep) != nil {
		return nil
	}
	return rep.Metrics.ModelIPS.Exported
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

// explanationsWith runs the explanations section on a second engine whose explanations find
// their evidence by strategy (recommend.Config.ExplainEvidence).
func explanationsWith(ctx context.Context, env *eval.Env, cfg QualityConfig, users []eval.SplitUser, strategy string) (rep *ExplanationsReport, err error) {
	eng, err := env.OpenEngine(cfg.Bundle, recommend.Config{Batch: cfg.Batch, Logger: cfg.Logger, ExplainEvidence: strategy})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, eng.Close()) }()
	other := *env
	other.Engine = eng
	rep, err = RunExplanations(ctx, &other, users, cfg.ExplainUsers, cfg.Workers, cfg.Progress)
	if err == nil {
		report.Progressf(cfg.Progress, "quality: explanations (%s evidence) in %.1fs", strategy, rep.Seconds)
	}
	return rep, err
}

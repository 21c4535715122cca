package eval

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/recommend"
)

// Env is a bundle's engine opened beside the data split over the engine's catalog: what
// every evaluation through the engine starts from.
type Env struct {
	Runtime *ort.Runtime
	Engine  *recommend.Engine
	Data    *Dataset
	// All is every user of the split (the baselines train on them); Users those with a
	// held-out item, in the same order.
	All, Users []SplitUser
	// Counts are each row's training interactions; Popularity the metrics' training
	// popularity (counts over users).
	Counts, Popularity []float64
	// Embeddings are the bundle's item embeddings (the content embeddings the export's ILD
	// uses), Dim values per row.
	Embeddings []float32
	Dim        int
	// Matches says whether the data is what the bundle was trained on (fingerprint of a
	// generic folder, else the counts of users, items and interactions); MatchNote says how it
	// was decided.
	Matches   bool
	MatchNote string
	// Propensities says where IPS's propensities come from.
	Propensities string
	// Notes say what was dropped or differs.
	Notes []string
}

// OpenEnv loads dataDir, opens the engine on bundleDir with ecfg (MaxHistory is raised to the
// longest user history, at least 1000; rto.Logger defaults to ecfg.Logger) and splits the
// data over the engine's catalog. When the bundle ships no training counts, the engine's live
// popularity is seeded with the split's training counts, so that IPS reweights by them.
func OpenEnv(bundleDir, dataDir string, rto ort.Options, ecfg recommend.Config) (env *Env, err error) {
	data, err := Load(dataDir)
	if err != nil {
		return nil, err
	}
	env = &Env{Data: data}
	opened := env // a failing return sets env to nil before this runs
	defer func() {
		if err != nil {
			err = errors.Join(err, opened.Close())
			env = nil
		}
	}()
	if rto.Logger == nil {
		rto.Logger = ecfg.Logger
	}
	if env.Runtime, err = ort.Open(rto); err != nil {
		return nil, err
	}
	for _, u := range data.Users {
		ecfg.MaxHistory = max(ecfg.MaxHistory, 1000, len(u.Items))
	}
	if env.Engine, err = recommend.Open(bundleDir, env.Runtime, ecfg); err != nil {
		return nil, err
	}
	m := env.Engine.Manifest()
	all, dropped := data.Split(env.Engine.Row)
	if dropped > 0 {
		env.Notes = append(env.Notes, fmt.Sprintf("%d interactions on items outside the bundle's catalog were dropped", dropped))
	}
	n := len(env.Engine.Items())
	env.All, env.Dim = all, m.EmbeddingDim
	env.Counts = TrainCounts(all, n)
	env.Popularity = Popularity(env.Counts, len(all))
	for _, u := range all {
		if u.Test >= 0 {
			env.Users = append(env.Users, u)
		}
	}
	if len(env.Users) == 0 {
		return nil, fmt.Errorf("eval: %s: no user has the three interactions a held-out item needs", dataDir)
	}
	if env.Embeddings, err = readEmbeddings(filepath.Join(bundleDir, m.Items.Embeddings), n*m.EmbeddingDim); err != nil {
		return nil, err
	}
	stats := env.Engine.Stats()
	var shipped float64
	for i := 0; i < n; i++ {
		shipped += stats.Count(i)
	}
	pc := stats.Config()
	if shipped > 0 {
		env.Propensities = fmt.Sprintf("the bundle's training counts (%.0f interactions), smoothing %g, clip %g", shipped, pc.Smoothing, pc.ClipMin)
	} else {
		for i, c := range env.Counts {
			stats.Seed(i, c)
		}
		env.Propensities = fmt.Sprintf("the split's training counts seeded into the engine's live popularity (the bundle ships none), "+
			"smoothing %g, clip %g", pc.Smoothing, pc.ClipMin)
	}
	fp := ""
	if data.Generic {
		if fp, err = Fingerprint(dataDir); err != nil {
			return nil, err
		}
	}
	env.Matches, env.MatchNote = dataMatchesBundle(data, all, m, fp)
	if !env.Matches {
		env.Notes = append(env.Notes, "the data differs from the bundle's training data: "+env.MatchNote)
	}
	return env, nil
}

// OpenEngine opens another engine on the env's bundle and runtime with ecfg (MaxHistory raised
// as OpenEnv raises it, the live popularity seeded as OpenEnv seeds it), for comparing engine
// settings on the same split; the caller closes it.
func (e *Env) OpenEngine(bundleDir string, ecfg recommend.Config) (*recommend.Engine, error) {
	for _, u := range e.Data.Users {
		ecfg.MaxHistory = max(ecfg.MaxHistory, 1000, len(u.Items))
	}
	eng, err := recommend.Open(bundleDir, e.Runtime, ecfg)
	if err != nil {
		return nil, err
	}
	stats, seeded := e.Engine.Stats(), eng.Stats()
	for i := range e.Counts {
		if want := stats.Count(i); seeded.Count(i) < want {
			seeded.Seed(i, want-seeded.Count(i))
		}
	}
	return eng, nil
}

// Close closes the engine and the runtime.
func (e *Env) Close() error {
	var errs []error
	if e.Engine != nil {
		errs = append(errs, e.Engine.Close())
	}
	if e.Runtime != nil {
		errs = append(errs, e.Runtime.Close())
	}
	return errors.Join(errs...)
}

// Metrics are the metrics of users' lists tops (their held-out items the targets).
func (e *Env) Metrics(users []SplitUser, tops [][]int) Metrics {
	targets, gender, age := make([]int, len(users)), make([]string, len(users)), make([]string, len(users))
	for i, u := range users {
		targets[i], gender[i], age[i] = u.Test, u.Gender, u.AgeBand
	}
	return ListMetrics(tops, targets, e.Embeddings, e.Dim, e.Popularity, gender, age)
}

// dataMatchesBundle compares the data with the manifest's "data" section: the fingerprint fp
// of a generic folder, else the counts of users, items and interactions.
func dataMatchesBundle(d *Dataset, users []SplitUser, m *bundle.Manifest, fp string) (bool, string) {
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
		return nil, fmt.Errorf("eval: %w", err)
	}
	if len(raw) != 4*n {
		return nil, fmt.Errorf("eval: %s: %d bytes, want %d", path, len(raw), 4*n)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out, nil
}

// ExportMetrics reads the export's metrics of the bundle in dir: report.json's when present
// (with groups; the model's row is then the served weights' own figures,
// metrics.model.exported, when the report has them, which is what the engine reproduces),
// else the manifest's; it says which.
func ExportMetrics(dir string, m *bundle.Manifest) (map[string]Metrics, string) {
	var rep struct {
		Metrics map[string]Metrics `json:"metrics"`
	}
	if raw, err := os.ReadFile(filepath.Join(dir, "report.json")); err == nil && json.Unmarshal(raw, &rep) == nil && len(rep.Metrics) > 0 {
		var served struct {
			Metrics struct {
				Model struct {
					Exported *Metrics `json:"exported"`
				} `json:"model"`
			} `json:"metrics"`
		}
		if json.Unmarshal(raw, &served) == nil && served.Metrics.Model.Exported != nil {
			rep.Metrics["model"] = *served.Metrics.Model.Exported
			return rep.Metrics, "report.json (the exported seed's own figures for the model)"
		}
		return rep.Metrics, "report.json"
	}
	var mm map[string]Metrics
	if len(m.Metrics) > 0 && json.Unmarshal(m.Metrics, &mm) == nil && len(mm) > 0 {
		return mm, "manifest.json"
	}
	return nil, ""
}

// Parallel runs f(0..n-1) on workers goroutines (at least one) and returns the first error;
// after an error or ctx's end no new call starts.
func Parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := 0; w < min(max(workers, 1), n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// IDs are the item ids of catalog rows.
func IDs(items []recommend.Item, rows []int) []string {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = items[r].ID
	}
	return ids
}

// Request is the protocol's request for a history of catalog rows: the top K of the catalog
// minus the history, at IPS strength alpha.
func Request(items []recommend.Item, history []int, alpha float64) recommend.Request {
	return recommend.Request{History: IDs(items, history), K: K, ExcludeSeen: true, Alpha: &alpha}
}

// Lists asks eng for the lists of the requests req(0..n-1), workers at once, as catalog rows.
func Lists(ctx context.Context, eng *recommend.Engine, n, workers int, req func(i int) recommend.Request) ([][]int, error) {
	tops := make([][]int, n)
	err := Parallel(ctx, n, workers, func(i int) error {
		resp, err := eng.Recommend(ctx, req(i))
		if err != nil {
			return fmt.Errorf("eval: request %d: %w", i, err)
		}
		tops[i] = make([]int, len(resp.Items))
		for k, it := range resp.Items {
			tops[i][k], _ = eng.Row(it.ItemID)
		}
		return nil
	})
	return tops, err
}

// EngineTops is the engine's list for every user's TestHistory at IPS strength alpha, workers
// requests at once (so that the engine batches across them).
func EngineTops(ctx context.Context, eng *recommend.Engine, users []SplitUser, alpha float64, workers int) ([][]int, error) {
	items := eng.Items()
	return Lists(ctx, eng, len(users), workers, func(u int) recommend.Request {
		return Request(items, users[u].TestHistory(), alpha)
	})
}

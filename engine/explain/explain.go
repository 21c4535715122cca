// Package explain writes templated natural-language explanations of recommendations from
// evidence the model used. The engine measures the evidence (engine/recommend: each recent
// history item and each of the request's query, image and audio removed in turn, through the
// same fusion and generator); this package turns it into sentences, each with its kind, its
// numbers and the ids of its evidence:
//
//   - context: the request's query, image or voice moved the item up (cited evidence), or the
//     item is trending now (its rank among trending items);
//   - similarity: a history item whose removal moves the item down, said in the strongest true
//     words: "people who liked X also liked Y" with the real co-occurrence count when enough
//     users share both, "similar to X" when their content is close, else "because X is in your
//     history";
//   - preference: the item's categories that a measurable share of the history has (at least
//     PreferenceShare of it and two items), with the count;
//   - general: an item with no cited evidence and no shared preference gets a plain sentence
//     that claims nothing it cannot show.
//
// Nothing is generated freely: every sentence is a template in templates.go filled with
// evidence ids, titles and measured numbers.
package explain

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"text/template"
)

// Kind is the kind of reason.
type Kind string

const (
	Preference Kind = "preference"
	Similarity Kind = "similarity"
	Context    Kind = "context"
	General    Kind = "general"
)

// Explanation is one reason for one recommended item.
type Explanation struct {
	Kind     Kind     `json:"kind"`
	Template string   `json:"template"`
	Text     string   `json:"text"`
	Evidence []string `json:"evidence"` // item ids, category names, or "query" / "image" / "audio"
	// Values are the measured numbers behind the sentence: "score_drop" (the item's
	// log-probability lost without the evidence), "rank" and "rank_without" (its place in the
	// served list with and without it; past the end when it drops out), "co_occurrence" (users who had both items),
	// "similarity" (content cosine), "share" and "count" (of the history in the categories),
	// "trending_rank"; attention evidence gives "attention", "similarity" and "influence"
	// (their product) instead of the measured drop and ranks.
	Values map[string]float64 `json:"values,omitempty"`
}

// Item is what explanations need of a catalog item.
type Item struct {
	ID         string
	Title      string
	Categories []string
}

// Catalog gives items and content similarity by catalog row.
type Catalog interface {
	Item(row int) Item
	// Similarity is the cosine similarity of two items' content embeddings.
	Similarity(a, b int) float32
}

// Signals are the live statistics explanations draw on.
type Signals interface {
	CoOccurrence(a, b int) float64
	Trending(k int) []int
}

// Source names what a piece of evidence is: a history item or one of the request's modalities.
type Source string

const (
	FromHistory Source = "history"
	FromQuery   Source = "query"
	FromImage   Source = "image"
	FromAudio   Source = "audio"
)

// Evidence is what one piece of evidence did to one recommended item: either a measured
// counterfactual (the item's score and rank with the evidence and without it), or, for a
// history item under attention evidence (Estimated), the fusion's attention on it times its
// content similarity to the item.
type Evidence struct {
	Source Source
	// Row is the history item's catalog row (FromHistory only).
	Row int
	// Drop is the item's log-probability with the evidence minus without it; for estimated
	// evidence, the influence Attention * max(Similarity, 0).
	Drop float64
	// Rank and RankWithout are the item's 1-based places in the served list with and without
	// the evidence (the list's length + 1 when it is not in the list); 0 when estimated.
	Rank, RankWithout int
	// Estimated marks attention evidence: Attention is the fusion's attention weight on the
	// history item (1 for the newest, which the fusion reads directly), Similarity the content
	// cosine between it and the recommended item.
	Estimated             bool
	Attention, Similarity float64
}

// Cited says whether the evidence is strong enough to be cited: measured evidence when removing
// it moves the item down the ranking and costs it at least minDrop of log-probability;
// estimated evidence when its influence is at least minInfluence.
func (ev Evidence) Cited(minDrop, minInfluence float64) bool {
	if ev.Estimated {
		return ev.Drop >= minInfluence
	}
	return ev.RankWithout > ev.Rank && ev.Drop >= minDrop
}

// Request is what the user gave: history rows (oldest first) and the request's query text.
type Request struct {
	History []int
	Query   string
}

// Config sets thresholds. Zero fields take the defaults.
type Config struct {
	// MinDrop is the least log-probability an item must lose without a piece of evidence for
	// the evidence to be cited (default 0.05; its rank must fall too).
	MinDrop float64
	// MinInfluence is the least attention-times-similarity a history item must have on an item
	// for attention evidence to cite it (default DefaultMinInfluence).
	MinInfluence float64
	// MinCoOccurrence is how many users must share two items for "people who liked" (default 2).
	MinCoOccurrence float64
	// MinSimilarity is the content similarity for "similar to" (default 0.5).
	MinSimilarity float32
	// PreferenceShare is the least share of the history in a category for a preference reason
	// (default 0.25, and at least two items).
	PreferenceShare float64
	// TrendingTop is how many trending items count as "trending now" (default 20).
	TrendingTop int
	// MaxReasons is how many reasons a detailed explanation gives (default 3); a short one gives
	// one.
	MaxReasons int
}

// DefaultMinDrop is Config.MinDrop's default.
const DefaultMinDrop = 0.05

// DefaultMinInfluence is Config.MinInfluence's default. On the default bundle's test users,
// 75% of the history items attention evidence cited above it lowered their item's rank when
// left out (`llm4rec bench quality`, explanations.faithfulness); the threshold mostly decides
// how many items get a general sentence instead of a weak reason.
const DefaultMinInfluence = 0.1

func (c Config) withDefaults() Config {
	if c.MinDrop <= 0 {
		c.MinDrop = DefaultMinDrop
	}
	if c.MinInfluence <= 0 {
		c.MinInfluence = DefaultMinInfluence
	}
	if c.MinCoOccurrence <= 0 {
		c.MinCoOccurrence = 2
	}
	if c.MinSimilarity == 0 {
		c.MinSimilarity = 0.5
	}
	if c.PreferenceShare <= 0 {
		c.PreferenceShare = 0.25
	}
	if c.TrendingTop <= 0 {
		c.TrendingTop = 20
	}
	if c.MaxReasons <= 0 {
		c.MaxReasons = 3
	}
	return c
}

// Explainer renders explanations. It is safe for concurrent use.
type Explainer struct {
	cfg       Config
	catalog   Catalog
	signals   Signals
	templates map[string]*template.Template
}

// New parses Templates. It fails only if a template does not parse.
func New(catalog Catalog, signals Signals, cfg Config) (*Explainer, error) {
	e := &Explainer{cfg: cfg.withDefaults(), catalog: catalog, signals: signals, templates: map[string]*template.Template{}}
	funcs := template.FuncMap{"join": strings.Join, "count": func(v float64) string { return fmt.Sprintf("%.0f", v) }}
	for name, text := range Templates {
		t, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(text)
		if err != nil {
			return nil, fmt.Errorf("explain: template %s: %w", name, err)
		}
		e.templates[name] = t
	}
	return e, nil
}

// Config returns the thresholds in use (defaults filled in).
func (e *Explainer) Config() Config { return e.cfg }

func (e *Explainer) render(kind Kind, name string, data map[string]any, values map[string]float64, evidence ...string) Explanation {
	var b strings.Builder
	if err := e.templates[name].Execute(&b, data); err != nil {
		b.Reset()
		b.WriteString(string(kind)) // a template error never fails a recommendation
	}
	return Explanation{Kind: kind, Template: name, Text: b.String(), Evidence: evidence, Values: values}
}

// Profile is what is computed once per request and shared across its items.
type Profile struct {
	req      Request
	catCount map[string]int // history items per category
	trending map[int]int    // item -> rank (1-based)
}

// NewProfile summarises a request: how many history items each category has, and the
// trending items.
func (e *Explainer) NewProfile(req Request) *Profile {
	p := &Profile{req: req, catCount: map[string]int{}, trending: map[int]int{}}
	for _, h := range req.History {
		for _, c := range e.catalog.Item(h).Categories {
			p.catCount[c]++
		}
	}
	if e.signals != nil {
		for r, it := range e.signals.Trending(e.cfg.TrendingTop) {
			p.trending[it] = r + 1
		}
	}
	return p
}

// Explain returns the reasons for one recommended item, strongest first, from its measured
// evidence: cited request modalities (the request is what was asked for), then cited history
// items by how much they moved the item, then shared preferences, then trending; an item with
// none of these gets one general sentence. detailed gives up to MaxReasons reasons, otherwise
// one.
func (e *Explainer) Explain(p *Profile, row int, evidence []Evidence, detailed bool) []Explanation {
	item := e.catalog.Item(row)
	limit := 1
	if detailed {
		limit = e.cfg.MaxReasons
	}
	var out []Explanation
	cited := make([]Evidence, 0, len(evidence))
	for _, ev := range evidence {
		if ev.Cited(e.cfg.MinDrop, e.cfg.MinInfluence) {
			cited = append(cited, ev)
		}
	}
	slices.SortStableFunc(cited, func(a, b Evidence) int {
		if am, bm := a.Source != FromHistory, b.Source != FromHistory; am != bm {
			if am {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.Drop, a.Drop)
	})
	for _, ev := range cited {
		if len(out) == limit {
			return out
		}
		vals := map[string]float64{"score_drop": round(ev.Drop), "rank": float64(ev.Rank), "rank_without": float64(ev.RankWithout)}
		if ev.Estimated {
			vals = map[string]float64{"attention": round(ev.Attention), "similarity": round(ev.Similarity), "influence": round(ev.Drop)}
		}
		switch ev.Source {
		case FromQuery:
			out = append(out, e.render(Context, "context_query", map[string]any{"Query": p.req.Query}, vals, string(FromQuery)))
		case FromImage:
			out = append(out, e.render(Context, "context_image", nil, vals, string(FromImage)))
		case FromAudio:
			out = append(out, e.render(Context, "context_audio", nil, vals, string(FromAudio)))
		case FromHistory:
			out = append(out, e.fromHistory(item, row, ev.Row, vals))
		}
	}
	if len(out) < limit {
		if x, ok := e.preference(p, item); ok {
			out = append(out, x)
		}
	}
	if r, ok := p.trending[row]; ok && len(out) < limit {
		out = append(out, e.render(Context, "context_trending", map[string]any{"Rank": r},
			map[string]float64{"trending_rank": float64(r)}, item.ID))
	}
	if len(out) == 0 {
		out = append(out, e.render(General, "general", nil, nil))
	}
	return out
}

// fromHistory says why history item h moved item (row) in the strongest words that are true.
func (e *Explainer) fromHistory(item Item, row, h int, vals map[string]float64) Explanation {
	other := e.catalog.Item(h)
	if e.signals != nil {
		if co := e.signals.CoOccurrence(h, row); co >= e.cfg.MinCoOccurrence {
			vals["co_occurrence"] = co
			return e.render(Similarity, "similarity_cooccurrence",
				map[string]any{"Item": item.Title, "Other": other.Title, "Count": co}, vals, other.ID)
		}
	}
	if s := e.catalog.Similarity(h, row); s >= e.cfg.MinSimilarity {
		vals["similarity"] = round(float64(s))
		return e.render(Similarity, "similarity_embedding", map[string]any{"Other": other.Title}, vals, other.ID)
	}
	return e.render(Similarity, "similarity_history", map[string]any{"Other": other.Title}, vals, other.ID)
}

// preference is the item's categories that at least PreferenceShare of the history (and two
// items) has, most shared first.
func (e *Explainer) preference(p *Profile, item Item) (Explanation, bool) {
	n := len(p.req.History)
	var shared []string
	for _, c := range item.Categories {
		if k := p.catCount[c]; k >= 2 && float64(k) >= e.cfg.PreferenceShare*float64(n) {
			shared = append(shared, c)
		}
	}
	if len(shared) == 0 {
		return Explanation{}, false
	}
	slices.SortStableFunc(shared, func(a, b string) int { return cmp.Compare(p.catCount[b], p.catCount[a]) })
	shared = shared[:min(len(shared), 2)]
	k := p.catCount[shared[0]]
	return e.render(Preference, "preference", map[string]any{"Categories": shared, "Count": k, "Of": n},
		map[string]float64{"count": float64(k), "share": round(float64(k) / float64(n))}, shared...), true
}

func round(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// Package explain writes templated natural-language explanations of recommendations, each
// with the kind of reason and the ids of the evidence behind it: preference (categories the
// user engages with most), similarity (the history item most similar to the recommendation by
// co-occurrence or by content embedding) and context (the request's query, image or audio, or
// trending now).
package explain

import (
	"fmt"
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
)

// Explanation is one reason for one recommended item.
type Explanation struct {
	Kind     Kind     `json:"kind"`
	Template string   `json:"template"`
	Text     string   `json:"text"`
	Evidence []string `json:"evidence"` // item ids, category names, or "query" / "image" / "audio"
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

// Request is what the user gave: history rows (oldest first) and which modalities came with
// the request; ContextScore is the item's similarity to the request's query/image/audio
// embedding (nil when none).
type Request struct {
	History      []int
	Query        string
	HasImage     bool
	HasAudio     bool
	ContextScore func(item int) (modality string, score float32, ok bool)
}

// Config sets thresholds. Zero fields take the defaults.
type Config struct {
	// MinCoOccurrence is how many users must share two items for "people who liked" (default 2).
	MinCoOccurrence float64
	// MinSimilarity is the content similarity for "similar to" (default 0.3).
	MinSimilarity float32
	// MinContextScore is the similarity to the query/image/audio for a context reason (default 0.2).
	MinContextScore float32
	// TrendingTop is how many trending items count as "trending now" (default 20).
	TrendingTop int
	// TopCategories is how many of the user's categories count as preferences (default 3).
	TopCategories int
}

func (c Config) withDefaults() Config {
	if c.MinCoOccurrence <= 0 {
		c.MinCoOccurrence = 2
	}
	if c.MinSimilarity == 0 {
		c.MinSimilarity = 0.3
	}
	if c.MinContextScore == 0 {
		c.MinContextScore = 0.2
	}
	if c.TrendingTop <= 0 {
		c.TrendingTop = 20
	}
	if c.TopCategories <= 0 {
		c.TopCategories = 3
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
	funcs := template.FuncMap{"join": strings.Join}
	for name, text := range Templates {
		t, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(text)
		if err != nil {
			return nil, fmt.Errorf("explain: template %s: %w", name, err)
		}
		e.templates[name] = t
	}
	return e, nil
}

func (e *Explainer) render(kind Kind, name string, data any, evidence ...string) Explanation {
	var b strings.Builder
	if err := e.templates[name].Execute(&b, data); err != nil {
		b.Reset()
		b.WriteString(string(kind)) // a template error never fails a recommendation
	}
	return Explanation{Kind: kind, Template: name, Text: b.String(), Evidence: evidence}
}

// Profile is what is computed once per request and shared across its items.
type Profile struct {
	req      Request
	topCats  []string
	trending map[int]int // item -> rank (1-based)
}

// NewProfile summarises a request: the user's top categories and the trending items.
func (e *Explainer) NewProfile(req Request) *Profile {
	counts := map[string]int{}
	for _, h := range req.History {
		for _, c := range e.catalog.Item(h).Categories {
			counts[c]++
		}
	}
	cats := make([]string, 0, len(counts))
	for c := range counts {
		cats = append(cats, c)
	}
	slices.SortFunc(cats, func(a, b string) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return strings.Compare(a, b)
	})
	if len(cats) > e.cfg.TopCategories {
		cats = cats[:e.cfg.TopCategories]
	}
	p := &Profile{req: req, topCats: cats, trending: map[int]int{}}
	if e.signals != nil {
		for r, it := range e.signals.Trending(e.cfg.TrendingTop) {
			p.trending[it] = r + 1
		}
	}
	return p
}

// Explain returns the reasons for one recommended item, strongest kind first: context,
// similarity, preference. An item with no evidence gets no explanation.
func (e *Explainer) Explain(p *Profile, row int) []Explanation {
	item := e.catalog.Item(row)
	var out []Explanation
	if p.req.ContextScore != nil {
		if modality, score, ok := p.req.ContextScore(row); ok && score >= e.cfg.MinContextScore {
			switch modality {
			case "query":
				out = append(out, e.render(Context, "context_query", map[string]any{"Query": p.req.Query}, "query"))
			case "image":
				out = append(out, e.render(Context, "context_image", nil, "image"))
			case "audio":
				out = append(out, e.render(Context, "context_audio", nil, "audio"))
			}
		}
	}
	if rank, ok := p.trending[row]; ok {
		out = append(out, e.render(Context, "context_trending", map[string]any{"Rank": rank}, item.ID))
	}
	if len(p.req.History) > 0 {
		bestCo, coItem := 0.0, -1
		bestSim, simItem := float32(-2), -1
		for _, h := range p.req.History {
			if h == row {
				continue
			}
			if e.signals != nil {
				if c := e.signals.CoOccurrence(h, row); c > bestCo {
					bestCo, coItem = c, h
				}
			}
			if s := e.catalog.Similarity(h, row); s > bestSim {
				bestSim, simItem = s, h
			}
		}
		switch {
		case coItem >= 0 && bestCo >= e.cfg.MinCoOccurrence:
			other := e.catalog.Item(coItem)
			out = append(out, e.render(Similarity, "similarity_cooccurrence",
				map[string]any{"Item": item.Title, "Other": other.Title, "Count": bestCo}, other.ID))
		case simItem >= 0 && bestSim >= e.cfg.MinSimilarity:
			other := e.catalog.Item(simItem)
			out = append(out, e.render(Similarity, "similarity_embedding", map[string]any{"Other": other.Title}, other.ID))
		}
	}
	var shared []string
	for _, c := range p.topCats {
		if slices.Contains(item.Categories, c) {
			shared = append(shared, c)
		}
	}
	if len(shared) > 0 {
		out = append(out, e.render(Preference, "preference", map[string]any{"Categories": shared}, shared...))
	}
	return out
}

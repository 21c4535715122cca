package server

import (
	"context"

	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/online"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/popularity"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/engine/retrieval"
)

// Recommender is what the server uses of a loaded bundle: recommendations and the catalog
// for the handlers, the live statistics and online learner that feedback updates, and what
// the metrics read. *recommend.Engine is the one served; handler tests use a fake that needs
// no ONNX Runtime.
type Recommender interface {
	Recommend(ctx context.Context, req recommend.Request) (*recommend.Response, error)
	// LearnerInputs is the online learner's view of the model: the fused user state and the
	// log-probabilities of a history (see recommend.Engine.LearnerInputs).
	LearnerInputs(ctx context.Context, history []string) (state, logProbs []float32, err error)
	Manifest() *bundle.Manifest
	Items() []recommend.Item
	Row(id string) (int, bool)
	Stats() *popularity.Stats
	// Learner is nil when online learning is off.
	Learner() *online.Learner
	Cache() *retrieval.EmbeddingCache
	QueueDepths() map[string]int
	// Search is the catalog items nearest to text by the bundle's text encoder (GET /v1/items).
	Search(ctx context.Context, text string, k int) ([]recommend.SearchHit, error)
	// Item is the item at row: the bundle's catalog (rows below len(Items())), then the items
	// added to the live catalog.
	Item(row int) (recommend.Item, bool)
	// ItemEmbedding is an item's content embedding by the bundle's encoders, AddItems adds
	// items with their embeddings to the live catalog (all or nothing; recommend.ErrRequest for
	// a bad one), Added lists what was added (POST /admin/items).
	ItemEmbedding(ctx context.Context, it recommend.NewItem) ([]float32, error)
	AddItems(items []recommend.AddedItem) error
	Added() []recommend.AddedItem
	// Close is called once, after the last request using the Recommender is done.
	Close() error
}

var _ Recommender = (*recommend.Engine)(nil)

// Backend opens bundles as Recommenders on one execution provider.
type Backend interface {
	// Open loads the bundle in dir with cfg, validated and warmed up, ready to serve.
	Open(dir string, cfg recommend.Config) (Recommender, error)
	// Provider names the execution provider: a metrics label and part of every answer.
	Provider() string
}

// RuntimeBackend is the Backend that serves: recommend.Open on rt.
func RuntimeBackend(rt *ort.Runtime) Backend { return runtimeBackend{rt} }

type runtimeBackend struct{ rt *ort.Runtime }

func (b runtimeBackend) Open(dir string, cfg recommend.Config) (Recommender, error) {
	eng, err := recommend.Open(dir, b.rt, cfg)
	if err != nil {
		return nil, err // not a nil *Engine inside a non-nil interface
	}
	return eng, nil
}

func (b runtimeBackend) Provider() string { return string(b.rt.Provider()) }

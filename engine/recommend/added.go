package recommend

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/llm4rec/llm4rec/engine/retrieval"
)

// Items added to a live catalog (POST /admin/items). The generator's vocabulary is fixed when
// the bundle is trained, so an added item has no logit and no ID embedding of its own:
//
//   - its content embedding follows the export's rule for catalog items (the text encoder's
//     embedding of its text, plus the manifest's training.image_mix times the image encoder's
//     embedding when it has an image and the bundle's image encoder was trained, normalised);
//   - its logit is a content prior: the similarity-weighted mean of the generator's logits of
//     its PriorNeighbours nearest catalog items by content (their request terms left out),
//     plus the request's steering term with its own embedding, so a query, image or voice
//     that describes it lifts it exactly as it lifts catalog items;
//   - in a history it enters fusion with its own content embedding and the item token of its
//     nearest catalog item (the graph has no ID embedding for it);
//   - IPS treats it as an item with no interactions yet (the bundle's propensity floor), the
//     online learner does not correct it, retrieval does not return it as context, and the
//     explanations cite no measured evidence for it (its categories and the general reason).
//
// Additions are append-only: rows len(Items())+j are stable, so a row a request saw stays
// valid while later items are added. A new bundle starts with none; the server re-adds what
// it persisted (server/items.go).

// PriorNeighbours is how many catalog items an added item's logit is borrowed from.
const PriorNeighbours = 10

// MaxAddedItems bounds how many items may be added to one loaded bundle.
const MaxAddedItems = 10000

// NewItem is an item to add: Text defaults to the export's "title. category, category" when
// empty; Image (JPEG or PNG bytes) is optional.
type NewItem struct {
	Item
	Image []byte
}

// AddedItem is an added item with its content embedding (unit norm, the bundle's dimension).
type AddedItem struct {
	Item      Item      `json:"item"`
	Embedding []float32 `json:"embedding"`
}

// addedSet is one immutable state of the additions: Engine.added points at the newest.
type addedSet struct {
	items []Item
	emb   []float32      // [len(items), D]
	byID  map[string]int // id -> index into items
	prior [][]retrieval.Hit
	token []int // the item token each added item uses in fusion's history
}

func (a *addedSet) len() int {
	if a == nil {
		return 0
	}
	return len(a.items)
}

// ItemText is the text an item's content embedding is computed from: its text, else its
// title and categories joined as the export does (export/llm4rec_export/data.py), else its id.
func ItemText(it Item) string {
	if it.Text != "" {
		return it.Text
	}
	var parts []string
	if it.Title != "" {
		parts = append(parts, it.Title)
	}
	if len(it.Categories) > 0 {
		parts = append(parts, strings.Join(it.Categories, ", "))
	}
	if len(parts) == 0 {
		return it.ID
	}
	return strings.Join(parts, ". ")
}

// ItemEmbedding computes an item's content embedding by the export's rule for catalog items
// with the bundle's own encoders (see the package comment on added items).
func (e *Engine) ItemEmbedding(ctx context.Context, it NewItem) ([]float32, error) {
	out, err := e.embedTexts(ctx, []string{ItemText(it.Item)})
	if err != nil {
		return nil, err
	}
	v := append([]float32(nil), out[0]...)
	if len(it.Image) > 0 {
		if mix := e.imageMix; mix != 0 {
			img, err := e.EmbedImage(ctx, it.Image)
			if err != nil {
				return nil, err
			}
			for d := range v {
				v[d] += float32(mix) * img[d]
			}
		}
	}
	retrieval.Normalize(v)
	return v, nil
}

// AddItems adds items to the live catalog (after any added before); they are recommendable
// on the next request. An id already in the catalog or added earlier, an embedding of the
// wrong size or not of unit norm, or going past MaxAddedItems is refused (ErrRequest) and
// nothing is added.
func (e *Engine) AddItems(items []AddedItem) error {
	e.addMu.Lock()
	defer e.addMu.Unlock()
	old := e.added.Load()
	if old.len()+len(items) > MaxAddedItems {
		return fmt.Errorf("%w: %d items added already, %d more would exceed the limit of %d", ErrRequest, old.len(), len(items), MaxAddedItems)
	}
	next := &addedSet{byID: make(map[string]int, old.len()+len(items))}
	if old != nil {
		next.items = append(make([]Item, 0, len(old.items)+len(items)), old.items...)
		next.emb = append(make([]float32, 0, len(old.emb)+len(items)*e.dim), old.emb...)
		next.prior = append(next.prior, old.prior...)
		next.token = append(next.token, old.token...)
		for id, i := range old.byID {
			next.byID[id] = i
		}
	}
	for _, a := range items {
		id := a.Item.ID
		if id == "" {
			return fmt.Errorf("%w: an added item has no id", ErrRequest)
		}
		if _, ok := e.byID[id]; ok {
			return fmt.Errorf("%w: item %q is already in the catalog", ErrRequest, id)
		}
		if _, ok := next.byID[id]; ok {
			return fmt.Errorf("%w: item %q was already added", ErrRequest, id)
		}
		if len(a.Embedding) != e.dim {
			return fmt.Errorf("%w: item %q: embedding of %d values, want %d", ErrRequest, id, len(a.Embedding), e.dim)
		}
		if n := math.Sqrt(float64(retrieval.Dot(a.Embedding, a.Embedding))); math.Abs(n-1) > 1e-3 {
			return fmt.Errorf("%w: item %q: embedding has norm %.4f, want 1", ErrRequest, id, n)
		}
		hits := e.index.Search(a.Embedding, PriorNeighbours, nil)
		if len(hits) == 0 {
			return fmt.Errorf("recommend: item %q: no catalog neighbours", id)
		}
		next.byID[id] = len(next.items)
		next.items = append(next.items, a.Item)
		next.emb = append(next.emb, a.Embedding...)
		next.prior = append(next.prior, hits)
		next.token = append(next.token, hits[0].Item+e.offset)
	}
	e.added.Store(next)
	return nil
}

// Added is the items added so far, oldest first, with their embeddings.
func (e *Engine) Added() []AddedItem {
	a := e.added.Load()
	out := make([]AddedItem, a.len())
	for i := range out {
		out[i] = AddedItem{Item: a.items[i], Embedding: a.emb[i*e.dim : (i+1)*e.dim : (i+1)*e.dim]}
	}
	return out
}

// Item is the item at row: the bundle's catalog, then the added items.
func (e *Engine) Item(row int) (Item, bool) {
	if row >= 0 && row < len(e.items) {
		return e.items[row], true
	}
	a := e.added.Load()
	if j := row - len(e.items); j >= 0 && j < a.len() {
		return a.items[j], true
	}
	return Item{}, false
}

// emb is row's content embedding (catalog or added).
func (e *Engine) emb(row int) []float32 {
	D := e.dim
	if row < len(e.items) {
		return e.itemEmb[row*D : (row+1)*D]
	}
	j := row - len(e.items)
	return e.added.Load().emb[j*D : (j+1)*D]
}

// token is row's item token in fusion's history: its own, or an added item's nearest catalog
// item's.
func (e *Engine) token(row int) int64 {
	if row < len(e.items) {
		return int64(row + e.offset)
	}
	return int64(e.added.Load().token[row-len(e.items)])
}

// addedScores writes the added items' log-probability numerators into dst[len(e.items):]: the
// content prior over the item columns of logits (which already carry the request's terms,
// taken back out of the neighbours) plus each added item's own steering term (steer . emb).
func (e *Engine) addedScores(a *addedSet, logits, terms, steer []float32, dst []float32) {
	items := logits[e.offset:]
	n := len(e.items)
	for j, hits := range a.prior {
		var num, den float64
		for _, h := range hits {
			w := float64(max(h.Score, 0))
			v := items[h.Item]
			if terms != nil {
				v -= terms[h.Item]
			}
			num += w * float64(v)
			den += w
		}
		s := float32(0)
		if den > 0 {
			s = float32(num / den)
		} else {
			s = items[hits[0].Item]
		}
		if steer != nil {
			s += retrieval.Dot(steer, a.emb[j*e.dim:(j+1)*e.dim])
		}
		dst[n+j] = s
	}
}

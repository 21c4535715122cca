package recommend

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/llm4rec/llm4rec/engine/retrieval"
)

// SearchHit is one catalog item found by Search, with the cosine similarity between its content
// embedding and the text's embedding.
type SearchHit struct {
	Item
	Score float32 `json:"score"`
}

// Search returns the k catalog items nearest to text: the text encoder's embedding of text
// (cached by content, as a request's query is) against the catalog's content embeddings through
// the retrieval index, by descending cosine similarity. It is how a client finds items by
// words; the same embedding steers a recommendation whose query is text. Items added to the
// live catalog are searched too. Blank text and k
// outside 1 to Config.MaxK are refused with ErrRequest.
func (e *Engine) Search(ctx context.Context, text string, k int) ([]SearchHit, error) {
	if strings.TrimSpace(text) == "" {
		return nil, fmt.Errorf("%w: search text is empty", ErrRequest)
	}
	if k < 1 || k > e.cfg.MaxK {
		return nil, fmt.Errorf("%w: limit %d: must be 1 to %d", ErrRequest, k, e.cfg.MaxK)
	}
	q, err := e.EmbedQuery(ctx, text)
	if err != nil {
		return nil, err
	}
	hits := e.index.Search(q, k, nil)
	if a := e.added.Load(); a.len() > 0 {
		// items added to the live catalog (added.go): scanned, merged by score
		u := slices.Clone(q)
		retrieval.Normalize(u)
		for j := range a.items {
			hits = append(hits, retrieval.Hit{Item: len(e.items) + j, Score: retrieval.Dot(u, a.emb[j*e.dim:(j+1)*e.dim])})
		}
		slices.SortStableFunc(hits, func(x, y retrieval.Hit) int { return cmp.Compare(y.Score, x.Score) })
		hits = hits[:min(k, len(hits))]
	}
	out := make([]SearchHit, len(hits))
	for i, h := range hits {
		it, _ := e.Item(h.Item)
		it.Text, it.Popularity = "", 0 // the model's input and training count are not part of a search answer
		out[i] = SearchHit{Item: it, Score: h.Score}
	}
	return out, nil
}

package recommend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/llm4rec/llm4rec/engine/retrieval"
)

// Search ranks the catalog (through the default, exact index) by the cosine between the text
// encoder's embedding of the text and each item's content embedding: the hits are exactly the
// best k of that scan, in order.
func TestSearchRanksByTextEmbedding(t *testing.T) {
	e := testEngine(t)
	ctx := context.Background()
	for _, q := range []string{"a comedy", "space adventure with robots", "Toy Story"} {
		hits, err := e.Search(ctx, q, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != 10 {
			t.Fatalf("%q: %d hits", q, len(hits))
		}
		emb, err := e.EmbedQuery(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		qn := slices.Clone(emb)
		retrieval.Normalize(qn)
		type scored struct {
			row int
			s   float32
		}
		all := make([]scored, len(e.items))
		for i := range e.items {
			all[i] = scored{i, retrieval.Dot(qn, e.index.Vector(i))}
		}
		slices.SortStableFunc(all, func(a, b scored) int {
			if a.s != b.s {
				if a.s > b.s {
					return -1
				}
				return 1
			}
			return a.row - b.row
		})
		for i, h := range hits {
			want := e.items[all[i].row]
			if h.ID != want.ID || math.Abs(float64(h.Score-all[i].s)) > 1e-4 || h.Title != want.Title || !slices.Equal(h.Categories, want.Categories) {
				t.Fatalf("%q: hit %d is %s (%.4f), want %s (%.4f)", q, i, h.ID, h.Score, want.ID, all[i].s)
			}
			if i > 0 && h.Score > hits[i-1].Score {
				t.Fatalf("%q: scores not descending at %d", q, i)
			}
			if h.Text != "" || h.Popularity != 0 {
				t.Fatalf("%q: hit %d carries the item's text or training count", q, i)
			}
		}
		if testing.Verbose() {
			var titles []string
			for _, h := range hits[:5] {
				titles = append(titles, fmt.Sprintf("%s %.3f", h.Title, h.Score))
			}
			fmt.Fprintf(os.Stderr, "search %q: %s\n", q, strings.Join(titles, "; "))
		}
	}
}

func TestSearchRefusesBadInput(t *testing.T) {
	e := testEngine(t)
	for name, c := range map[string]struct {
		q string
		k int
	}{"empty": {"", 10}, "blank": {" \t\n", 10}, "k 0": {"comedy", 0}, "k negative": {"comedy", -3},
		"k past MaxK": {"comedy", e.cfg.MaxK + 1}, "not UTF-8": {"\xff\xfe", 10}} {
		if _, err := e.Search(context.Background(), c.q, c.k); !errors.Is(err, ErrRequest) {
			t.Errorf("%s: %v, want ErrRequest", name, err)
		}
	}
	if hits, err := e.Search(context.Background(), "comedy", e.cfg.MaxK); err != nil || len(hits) != e.cfg.MaxK {
		t.Fatalf("k = MaxK: %d hits, %v", len(hits), err)
	}
}

// Concurrent searches through the batched text encoder each get the answer they get alone.
func TestSearchConcurrent(t *testing.T) {
	e := testEngine(t)
	queries := []string{"comedy", "horror film", "war drama", "a love story in Paris", "children's animation", "crime thriller"}
	want := map[string][]SearchHit{}
	for _, q := range queries {
		hits, err := e.Search(context.Background(), q, 5)
		if err != nil {
			t.Fatal(err)
		}
		want[q] = hits
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := queries[i%len(queries)]
			if i%2 == 1 {
				q = fmt.Sprintf("%s %d", q, i) // a cache miss: through the encoder's batcher
			}
			hits, err := e.Search(context.Background(), q, 5)
			if err != nil {
				errs <- err
				return
			}
			if w, ok := want[q]; ok && fmt.Sprint(hits) != fmt.Sprint(w) {
				errs <- fmt.Errorf("%q: %v, alone %v", q, hits, w)
			}
			if len(hits) != 5 {
				errs <- fmt.Errorf("%q: %d hits", q, len(hits))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

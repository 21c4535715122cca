package recommend

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/llm4rec/llm4rec/engine/retrieval"
)

// ownEngine opens a bundle for one test alone (added items change what it serves).
func ownEngine(t *testing.T, dir string) *Engine {
	t.Helper()
	return ownEngineConfig(t, dir, Config{})
}

// ownEngineConfig is ownEngine with cfg.
func ownEngineConfig(t *testing.T, dir string, cfg Config) *Engine {
	t.Helper()
	testEngine(t) // the package's runtime
	e, err := Open(dir, rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// TestItemEmbeddingFollowsTheExportRule computes catalog items' content embeddings from their
// dataset text as if they were added, and compares them with the rows the export wrote.
func TestItemEmbeddingFollowsTheExportRule(t *testing.T) {
	dir, _ := filepath.Abs("../../models/amazon-scientific/1")
	if _, err := os.Stat(filepath.Join(dir, "text_encoder.weights")); err != nil {
		t.Skipf("amazon-scientific bundle not installed: %v", err)
	}
	root := os.Getenv("LLM4REC_DATA")
	if root == "" {
		root = "../../../shared/data"
	}
	f, err := os.Open(filepath.Join(root, "amazon-scientific", "items.jsonl"))
	if err != nil {
		t.Skipf("no amazon-scientific data (set LLM4REC_DATA): %v", err)
	}
	defer f.Close()
	e := ownEngine(t, dir)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() && n < 40 {
		var it Item
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
			t.Fatal(err)
		}
		row, ok := e.Row(it.ID)
		if !ok {
			continue
		}
		v, err := e.ItemEmbedding(context.Background(), NewItem{Item: it})
		if err != nil {
			t.Fatal(err)
		}
		if cos := retrieval.Dot(v, e.emb(row)); cos < 0.999 {
			t.Errorf("item %s: cosine %.5f between the added-item rule and the bundle's row", it.ID, cos)
		}
		n++
	}
	if n < 40 {
		t.Fatalf("compared %d items, want 40", n)
	}
}

func TestItemText(t *testing.T) {
	for _, c := range []struct {
		it   Item
		want string
	}{
		{Item{ID: "x", Title: "T", Categories: []string{"A", "B"}, Text: "given"}, "given"},
		{Item{ID: "x", Title: "T", Categories: []string{"A", "B"}}, "T. A, B"},
		{Item{ID: "x", Title: "T"}, "T"},
		{Item{ID: "x", Categories: []string{"A"}}, "A"},
		{Item{ID: "x"}, "x"},
	} {
		if got := ItemText(c.it); got != c.want {
			t.Errorf("ItemText(%+v) = %q, want %q", c.it, got, c.want)
		}
	}
}

// addWestern adds one item described as a western to e and returns its id.
func addWestern(t *testing.T, e *Engine) string {
	t.Helper()
	it := NewItem{Item: Item{ID: "new-western-1", Title: "Riders of the Lost Canyon (2026)", Categories: []string{"Western"},
		Text: "Riders of the Lost Canyon (2026). Western. A western about cowboys, outlaws, a sheriff and a cattle drive across the frontier."}}
	v, err := e.ItemEmbedding(context.Background(), it)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.AddItems([]AddedItem{{Item: it.Item, Embedding: v}}); err != nil {
		t.Fatal(err)
	}
	return it.ID
}

func TestAddedItemIsRecommendedForAQueryThatDescribesIt(t *testing.T) {
	e := ownEngine(t, testBundle(t))
	ctx := context.Background()
	hist := []string{"1", "50", "181", "172", "174", "100", "121", "7", "9", "127", "56", "98", "64", "71", "95", "69", "82", "12", "204", "210"}
	req := Request{History: hist, Query: "a western with cowboys", K: 10, ExcludeSeen: true}
	before, err := e.Recommend(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	id := addWestern(t, e)
	if row, ok := e.Row(id); !ok || row != len(e.Items()) {
		t.Fatalf("Row(%q) = %d, %v; want %d, true", id, row, ok, len(e.Items()))
	}
	after, err := e.Recommend(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(r *Response) []string {
		var out []string
		for _, it := range r.Items {
			out = append(out, it.ItemID)
		}
		return out
	}
	if slices.Contains(ids(before), id) || !slices.Contains(ids(after), id) {
		t.Fatalf("added western: before %v, after %v; want it only after", ids(before), ids(after))
	}
	// with the same history and no query it is not forced in: the list is the history's
	plain, err := e.Recommend(ctx, Request{History: hist, K: 10, ExcludeSeen: true})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ids(plain), id) {
		t.Errorf("the added western is in the history-only list %v", ids(plain))
	}
	// an added item may be part of a history, be explained, and be excluded as seen
	withIt, err := e.Recommend(ctx, Request{History: append(slices.Clone(hist), id), Query: "a western with cowboys", K: 10,
		ExcludeSeen: true, Explain: true, Mode: ModeTopK})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ids(withIt), id) {
		t.Errorf("seen added item listed: %v", ids(withIt))
	}
	slate, err := e.Recommend(ctx, Request{History: hist, Query: "a western with cowboys", K: 5, ExcludeSeen: true, Mode: ModeSlate})
	if err != nil || len(slate.Items) != 5 {
		t.Fatalf("slate with an added item in the catalog: %v, %v", slate, err)
	}
	for _, it := range after.Items {
		if it.ItemID == id && (it.Title != "Riders of the Lost Canyon (2026)" || it.Categories[0] != "Western") {
			t.Errorf("added item served as %+v", it)
		}
	}
	if got := e.Added(); len(got) != 1 || got[0].Item.ID != id {
		t.Errorf("Added() = %v", got)
	}
	hits, err := e.Search(ctx, "a western about cowboys and outlaws on the frontier", 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 5 || hits[0].ID != id || hits[0].Score < hits[1].Score {
		t.Errorf("search for its description: %+v", hits)
	}
}

func TestAddItemsRefusesAndAddsNothing(t *testing.T) {
	e := ownEngine(t, testBundle(t))
	unit := make([]float32, e.dim)
	unit[0] = 1
	for name, batch := range map[string][]AddedItem{
		"catalog id":   {{Item: Item{ID: "n1"}, Embedding: unit}, {Item: Item{ID: e.items[0].ID}, Embedding: unit}},
		"repeated id":  {{Item: Item{ID: "n1"}, Embedding: unit}, {Item: Item{ID: "n1"}, Embedding: unit}},
		"no id":        {{Item: Item{ID: "n1"}, Embedding: unit}, {Item: Item{}, Embedding: unit}},
		"wrong size":   {{Item: Item{ID: "n1"}, Embedding: unit}, {Item: Item{ID: "n2"}, Embedding: unit[:3]}},
		"not unit":     {{Item: Item{ID: "n1"}, Embedding: unit}, {Item: Item{ID: "n2"}, Embedding: make([]float32, e.dim)}},
		"over the cap": make([]AddedItem, MaxAddedItems+1),
	} {
		if err := e.AddItems(batch); !errors.Is(err, ErrRequest) {
			t.Errorf("%s: err %v, want ErrRequest", name, err)
		}
		if len(e.Added()) != 0 {
			t.Fatalf("%s: %d items added by a refused call", name, len(e.Added()))
		}
	}
	if err := e.AddItems([]AddedItem{{Item: Item{ID: "n1"}, Embedding: unit}}); err != nil {
		t.Fatal(err)
	}
	if err := e.AddItems([]AddedItem{{Item: Item{ID: "n1"}, Embedding: unit}}); !errors.Is(err, ErrRequest) {
		t.Errorf("adding n1 twice: %v", err)
	}
}

// TestAddItemsWhileServing adds items while requests rank: every answer is whole and every
// item it names exists (run with -race; -count=20 without).
func TestAddItemsWhileServing(t *testing.T) {
	e := ownEngine(t, testBundle(t))
	base := e.emb(0)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				r, err := e.Recommend(context.Background(), Request{History: []string{"1", "2", "3"}, Query: "toy story", K: 20, Explain: i%3 == 0})
				if err != nil {
					errs <- err
					return
				}
				for _, it := range r.Items {
					if _, ok := e.Row(it.ItemID); !ok || it.Title == "" {
						errs <- errors.New("answer names an unknown item " + it.ItemID)
						return
					}
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		// near-copies of item 0 (Toy Story): added items the query and history reach
		v := slices.Clone(base)
		v[i] += 0.01
		retrieval.Normalize(v)
		if err := e.AddItems([]AddedItem{{Item: Item{ID: "copy-" + string(rune('a'+i)), Title: "Copy"}, Embedding: v}}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(e.Added()) != 20 {
		t.Errorf("%d added, want 20", len(e.Added()))
	}
}

// An item's image moves its embedding by the manifest's image_mix times the image encoder's
// embedding, as the export mixes catalog items' posters in.
func TestItemEmbeddingMixesTheImage(t *testing.T) {
	e := testEngine(t)
	mix, trained, err := e.manifest.ImageMix()
	if err != nil || !trained || mix != 0.25 || e.imageMix != mix {
		t.Fatalf("movielens bundle: image_mix %v, trained %v, engine's %v (%v); want 0.25, true", mix, trained, e.imageMix, err)
	}
	img := image.NewRGBA(image.Rect(0, 0, 40, 60))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 13)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	it := Item{ID: "x", Title: "A film", Categories: []string{"Drama"}}
	text, err := e.ItemEmbedding(ctx, NewItem{Item: it})
	if err != nil {
		t.Fatal(err)
	}
	both, err := e.ItemEmbedding(ctx, NewItem{Item: it, Image: buf.Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	q, _ := e.EmbedQuery(ctx, "A film. Drama")
	iv, err := e.EmbedImage(ctx, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, len(q))
	for d := range want {
		want[d] = q[d] + float32(mix)*iv[d]
	}
	retrieval.Normalize(want)
	if c := retrieval.Dot(text, q); c < 0.9999 {
		t.Errorf("text-only embedding: cosine %.5f with the text encoder's", c)
	}
	if c := retrieval.Dot(both, want); c < 0.9999 {
		t.Errorf("with the image: cosine %.5f with normalise(text + %.2f image)", c, mix)
	}
	if c := retrieval.Dot(both, text); c > 0.9999 {
		t.Errorf("the image changed nothing (cosine %.5f)", c)
	}
	if _, err := e.ItemEmbedding(ctx, NewItem{Item: it, Image: []byte("not an image")}); !errors.Is(err, ErrRequest) {
		t.Errorf("undecodable image: %v, want ErrRequest", err)
	}
}

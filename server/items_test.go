package server

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/recommend"
)

// Search is the fake engine's catalog search, with the engine's checks (recommend.Engine.Search):
// an item titled as the text first, then items whose title contains it, the rest by a hash of text and id; scores
// descending; a text encoder run reported to Observe.
func (f *fakeEngine) Search(ctx context.Context, text string, k int) ([]recommend.SearchHit, error) {
	if strings.TrimSpace(text) == "" {
		return nil, fmt.Errorf("%w: search text is empty", recommend.ErrRequest)
	}
	if k < 1 || k > f.cfg.MaxK {
		return nil, fmt.Errorf("%w: limit %d: must be 1 to %d", recommend.ErrRequest, k, f.cfg.MaxK)
	}
	if err := f.run(ctx, bundle.TextEncoder); err != nil {
		return nil, err
	}
	hits := make([]recommend.SearchHit, len(f.items))
	for i, it := range f.items {
		h := fnv.New32a()
		fmt.Fprint(h, text, "|", it.ID)
		score := float32(h.Sum32()%1000) / 2000
		switch title := strings.ToLower(it.Title); {
		case title == strings.ToLower(text):
			score += 1
		case strings.Contains(title, strings.ToLower(text)):
			score += 0.5
		}
		hits[i] = recommend.SearchHit{Item: recommend.Item{ID: it.ID, Title: it.Title, Categories: it.Categories}, Score: score}
	}
	slices.SortStableFunc(hits, func(a, b recommend.SearchHit) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	return hits[:min(k, len(hits))], nil
}

// errMessage is an error answer's message, decoded.
func errMessage(r reply) string {
	e, _ := r.body["error"].(map[string]any)
	return fmt.Sprint(e["message"])
}

func searchIDs(r reply) []string {
	var ids []string
	list, _ := r.body["items"].([]any)
	for _, it := range list {
		ids = append(ids, fmt.Sprint(it.(map[string]any)["item_id"]))
	}
	return ids
}

// GET /v1/items?q=&limit= checks its parameters at the edge, before any model runs: every bad
// one is a 400 that says what is wrong.
func TestSearchParameters(t *testing.T) {
	ts := start(t, nil)
	long := strings.Repeat("a", maxSearchBytes+1)
	for _, c := range []struct{ query, want string }{
		{"", "q: give the text"},
		{"?q=", "q: give the text"},
		{"?q=+++", "q: give the text"},
		{"?q=%09%0A", "q: give the text"},
		{"?limit=5", "q: give the text"},
		{"?q=%FF%FE", "not UTF-8"},
		{"?q=" + long, fmt.Sprintf("q of %d bytes exceeds the limit of %d", maxSearchBytes+1, maxSearchBytes)},
		{"?q=item&limit=0", "limit 0: must be 1 to 100"},
		{"?q=item&limit=-1", "limit -1: must be 1 to 100"},
		{"?q=item&limit=101", "limit 101: must be 1 to 100"},
		{"?q=item&limit=ten", `limit "ten": want an integer from 1 to 100`},
		{"?q=item&limit=", `limit "": want an integer`},
		{"?q=item&limit=2.5", `limit "2.5": want an integer`},
		{"?q=item&limit=99999999999999999999", "want an integer"},
		{"?q=a&q=b", "q given 2 times"},
		{"?q=a&limit=1&limit=2", "limit given 2 times"},
		{"?q=a&k=3", `unknown query parameter "k"`},
	} {
		r := ts.do("GET", "/v1/items"+c.query, "", nil)
		if r.status != 400 || r.errCode() != "bad_request" || !strings.Contains(errMessage(r), c.want) {
			t.Errorf("GET /v1/items%s: %d %s, want 400 with %q", truncate(c.query, 40), r.status, r.raw, c.want)
		}
	}
	if r := ts.do("POST", "/v1/items?q=a", "", nil); r.status != 405 {
		t.Errorf("POST /v1/items: %d %s, want 405", r.status, r.raw)
	}

	// the limits themselves are accepted; limit defaults to 10
	for query, n := range map[string]int{"?q=item": 10, "?q=item&limit=1": 1, "?q=item&limit=100": 100, "?limit=3&q=" + url.QueryEscape("Item 42"): 3} {
		r := ts.do("GET", "/v1/items"+query, "", nil)
		if r.status != 200 || len(searchIDs(r)) != n {
			t.Fatalf("GET /v1/items%s: %d, %d items, want 200 with %d: %s", query, r.status, len(searchIDs(r)), n, r.raw)
		}
	}
	// the answer: the engine's hits in its order, the text as decoded, the model
	r := ts.do("GET", "/v1/items?q=Item+42&limit=3", "", nil)
	if ids := searchIDs(r); ids[0] != "42" || r.body["query"] != "Item 42" {
		t.Fatalf("search for Item 42: %s", r.raw)
	}
	first := r.body["items"].([]any)[0].(map[string]any)
	if first["title"] != "Item 42" || first["categories"] == nil || first["score"] == nil || first["text"] != nil {
		t.Fatalf("hit: %v", first)
	}
	if m := r.body["model"].(map[string]any); m["name"] != "fake" || m["version"] != "1" {
		t.Fatalf("model: %v", m)
	}
	// a smaller MaxK is the limit's bound
	small := start(t, func(c *Config) { c.MaxK = 5 })
	if r := small.do("GET", "/v1/items?q=a&limit=6", "", nil); r.status != 400 || !strings.Contains(string(r.raw), "limit 6: must be 1 to 5") {
		t.Fatalf("limit past MaxK 5: %d %s", r.status, r.raw)
	}
	// searches are counted per route in the metrics
	if m := ts.do("GET", "/metrics", "", nil); !strings.Contains(string(m.raw), `llm4rec_http_requests_total{route="item_search",status="200"}`) {
		t.Fatalf("metrics lack the search route")
	}
}

// A search needs the inference key, like every /v1 call; /v1/items/{id} is still the item.
func TestSearchAuth(t *testing.T) {
	ts := start(t, func(c *Config) { c.APIKey, c.AdminKey = "inference-key", "admin-key" })
	if r := ts.do("GET", "/v1/items?q=a", "", nil); r.status != 401 {
		t.Fatalf("no key: %d %s", r.status, r.raw)
	}
	if r := ts.do("GET", "/v1/items?q=a", "wrong", nil); r.status != 401 {
		t.Fatalf("wrong key: %d %s", r.status, r.raw)
	}
	for _, key := range []string{"inference-key", "admin-key"} {
		if r := ts.do("GET", "/v1/items?q=a", key, nil); r.status != 200 || len(searchIDs(r)) != 10 {
			t.Fatalf("key %s: %d %s", key, r.status, r.raw)
		}
	}
	if r := ts.do("GET", "/v1/items/7", "inference-key", nil); r.status != 200 || r.body["item_id"] != "7" {
		t.Fatalf("item 7: %d %s", r.status, r.raw)
	}
}

// Searches take the in-flight slots that recommendations take: past MaxInFlight, 503 at once;
// they run concurrently with recommendations and feedback without a failure.
func TestSearchConcurrent(t *testing.T) {
	ts := start(t, func(c *Config) { c.MaxInFlight = 1 })
	ts.slots <- struct{}{} // one request in flight
	r := ts.do("GET", "/v1/items?q=a", "", nil)
	<-ts.slots
	if r.status != 503 || r.errCode() != "overloaded" || r.header.Get("Retry-After") == "" {
		t.Fatalf("search past MaxInFlight: %d %s", r.status, r.raw)
	}

	ts = start(t, nil)
	want := searchIDs(ts.do("GET", "/v1/items?q=Item+7&limit=5", "", nil))
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r reply
			switch i % 3 {
			case 0:
				r = ts.do("GET", "/v1/items?q=Item+7&limit=5", "", nil)
				if r.status == 200 && fmt.Sprint(searchIDs(r)) != fmt.Sprint(want) {
					t.Errorf("concurrent search: %v, alone %v", searchIDs(r), want)
				}
			case 1:
				r = ts.do("POST", "/v1/recommend", "", map[string]any{"history": []string{"1", "2"}, "k": 5})
			default:
				r = ts.do("POST", "/v1/feedback", "", map[string]any{"event_id": fmt.Sprint("search-conc-", i), "user_id": "u",
					"item_id": fmt.Sprint(i%fakeItems + 1), "type": "click", "timestamp": 1_700_000_000 + i})
			}
			if r.status != 200 {
				failed.Add(1)
				t.Errorf("request %d: %d %s", i, r.status, r.raw)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
}

// On the real bundle a search finds an item by its title's words through the text encoder.
func TestBundleSearch(t *testing.T) {
	ts := bundleServer(t)
	r := ts.do("GET", "/v1/items?q=Toy+Story&limit=5", "", nil)
	if r.status != 200 || len(searchIDs(r)) != 5 {
		t.Fatalf("search: %d %s", r.status, r.raw)
	}
	first := r.body["items"].([]any)[0].(map[string]any)
	if first["title"] != "Toy Story (1995)" || !slices.Contains(first["categories"].([]any), any("Animation")) {
		t.Fatalf("search for Toy Story: first hit %v", first)
	}
	if r := ts.do("GET", "/v1/items?q=Toy+Story&limit=101", "", nil); r.status != 400 {
		t.Fatalf("limit 101 on the bundle: %d %s", r.status, r.raw)
	}
}

// Search query strings: whatever arrives is answered with a classified status and a JSON body
// (checkAnswer), and a 200 lists at most limit items.
func FuzzSearchQuery(f *testing.F) {
	s := fuzzServer(f)
	for _, sd := range []string{"q=space+adventure", "q=Item+4&limit=3", "limit=0&q=a", "q=%FF", "q=a&q=b", "q=&limit=",
		"q=a&limit=1e3", "q=a&limit=-0", "q=" + strings.Repeat("x", 1001), "q=%00&limit=100", "k=1", "q=a&&&limit=2&"} {
		f.Add(sd)
	}
	f.Fuzz(func(t *testing.T, query string) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("GET")
		ctx.Request.SetRequestURI("/v1/items")
		ctx.Request.URI().SetQueryString(query)
		s.handle(&ctx)
		checkAnswer(t, "/v1/items", []byte(query), &ctx) // the query may be quoted back
		if ctx.Response.StatusCode() == 200 {
			var out struct{ Items []any }
			json.Unmarshal(ctx.Response.Body(), &out)
			limit := defaultSearchLimit
			if l := ctx.QueryArgs().GetUintOrZero("limit"); l > 0 {
				limit = l
			}
			if len(out.Items) == 0 || len(out.Items) > limit {
				t.Fatalf("%q: %d items", query, len(out.Items))
			}
		}
	})
}

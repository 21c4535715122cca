package server

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/png"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/recommend"
)

func newItem(id, title string, cats ...string) map[string]any {
	return map[string]any{"item_id": id, "title": title, "categories": cats}
}

// POST /admin/items on the fake engine: admin scope, limits at their edges, 409 for ids the
// catalog has, all or nothing, feedback on an added item accepted, GET /v1/items/{id}, and
// the items back after a restart and after a reload.
func TestAddItemsEndpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Bundle: fakeBundle, DataDir: dir, APIKey: "inf", AdminKey: "adm"}
	s, err := NewWithBackend(cfg, &fakeBackend{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, s)
	body := map[string]any{"items": []any{newItem("new-1", "New one", "Genre 1"), newItem("new-2", "New two")}}
	if r := ts.do("POST", "/admin/items", "inf", body); r.status != 403 {
		t.Fatalf("inference key: %d %s", r.status, r.raw)
	}
	long := strings.Repeat("x", 129)
	many := make([]any, MaxAddItems+1)
	for i := range many {
		many[i] = newItem(fmt.Sprint("m", i), "M")
	}
	justEnough := slices.Clone(many[:MaxAddItems])
	for name, c := range map[string]struct {
		body   any
		status int
	}{
		"empty list":         {map[string]any{"items": []any{}}, 400},
		"no title":           {map[string]any{"items": []any{map[string]any{"item_id": "x"}}}, 400},
		"id too long":        {map[string]any{"items": []any{newItem(long, "T")}}, 400},
		"catalog id":         {map[string]any{"items": []any{newItem("x", "T"), newItem("7", "T")}}, 409},
		"twice in a request": {map[string]any{"items": []any{newItem("x", "T"), newItem("x", "T")}}, 400},
		"too many":           {map[string]any{"items": many}, 413},
		"bad image":          {map[string]any{"items": []any{map[string]any{"item_id": "x", "title": "T", "image": "%%%"}}}, 400},
		"unknown field":      {map[string]any{"items": []any{map[string]any{"item_id": "x", "title": "T", "price": 3}}}, 400},
		"text too long": {map[string]any{"items": []any{map[string]any{"item_id": "x", "title": "T",
			"text": strings.Repeat("t", maxItemTextBytes+1)}}}, 400},
		"too many categories": {map[string]any{"items": []any{newItem("x", "T", strings.Split(strings.Repeat("c,", maxCategories+1), ",")[:maxCategories+1]...)}}, 400},
	} {
		if r := ts.do("POST", "/admin/items", "adm", c.body); r.status != c.status {
			t.Errorf("%s: %d %s, want %d", name, r.status, r.raw, c.status)
		}
	}
	if r := ts.do("GET", "/v1/items/x", "inf", nil); r.status != 404 {
		t.Fatalf("a refused request added item x: %d %s", r.status, r.raw)
	}
	r := ts.do("POST", "/admin/items", "adm", body)
	if r.status != 201 || r.body["added_total"] != float64(2) || r.body["catalog_items"] != float64(fakeItems+2) {
		t.Fatalf("add: %d %s", r.status, r.raw)
	}
	if r := ts.do("POST", "/admin/items", "adm", map[string]any{"items": []any{newItem("new-1", "Again")}}); r.status != 409 {
		t.Fatalf("adding new-1 again: %d %s", r.status, r.raw)
	}
	if r := ts.do("POST", "/admin/items", "adm", map[string]any{"items": justEnough}); r.status != 201 {
		t.Fatalf("%d items in one request: %d %s", MaxAddItems, r.status, r.raw)
	}
	if r := ts.do("GET", "/v1/items/new-1", "inf", nil); r.status != 200 || r.body["title"] != "New one" {
		t.Fatalf("GET new-1: %d %s", r.status, r.raw)
	}
	ev := map[string]any{"event_id": "e1", "user_id": "u1", "item_id": "new-2", "type": "click", "timestamp": time.Now().Unix()}
	if r := ts.do("POST", "/v1/feedback", "inf", ev); r.status != 200 {
		t.Fatalf("feedback on an added item: %d %s", r.status, r.raw)
	}
	if r := ts.do("GET", "/metrics", "inf", nil); !strings.Contains(string(r.raw), fmt.Sprintf("llm4rec_catalog_added_items %d", MaxAddItems+2)) {
		t.Errorf("metrics lack the added items gauge:\n%s", grepLines(string(r.raw), "added_items"))
	}
	if _, err := ts.Reload(""); err != nil {
		t.Fatal(err)
	}
	if r := ts.do("GET", "/v1/items/new-2", "inf", nil); r.status != 200 {
		t.Fatalf("after a reload: %d %s", r.status, r.raw)
	}
	ts.client.CloseIdleConnections()
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}

	s2, err := NewWithBackend(cfg, &fakeBackend{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts2 := serve(t, s2)
	t.Cleanup(func() { ts2.client.CloseIdleConnections(); s2.Shutdown() })
	l := ts2.serving()
	got := l.eng.Added()
	if len(got) != MaxAddItems+2 || got[0].Item.ID != "new-1" || got[1].Item.Categories != nil {
		t.Fatalf("after a restart: %d added, first %+v", len(got), got[0])
	}
	if r := ts2.do("GET", "/v1/items/new-1", "inf", nil); r.status != 200 {
		t.Fatalf("GET new-1 after a restart: %d %s", r.status, r.raw)
	}
	if v := ts2.do("GET", "/v1/users/u1", "inf", nil); v.status != 200 || !strings.Contains(string(v.raw), "new-2") {
		t.Fatalf("u1's history after a restart: %d %s", v.status, v.raw)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, ln := range strings.Split(s, "\n") {
		if strings.Contains(ln, sub) {
			out = append(out, ln)
		}
	}
	return strings.Join(out, "\n")
}

// On the real bundle: an item added through the API is recommended for a query that
// describes it at once (the first request after the 201), and again by a server restarted on
// the same data directory (its embedding restored from the store, not recomputed).
func TestAddedItemRecommendedAtOnceAndAfterRestart(t *testing.T) {
	dir := bundleDir(t)
	rt, err := ort.Open(ort.Options{Provider: ort.ProviderCPU})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	data := t.TempDir()
	cfg := Config{Bundle: dir, DataDir: data}
	open := func() *testServer {
		s, err := New(cfg, rt, nil)
		if err != nil {
			t.Fatal(err)
		}
		return serve(t, s)
	}
	ts := open()
	cat := ts.catalog()
	hist := slices.Clone(cat[100:120])
	req := map[string]any{"history": hist, "query": "a western with cowboys", "k": 10, "explain": true}
	if r := ts.do("POST", "/v1/recommend", "", req); r.status != 200 || slices.Contains(items(r), "new-western") {
		t.Fatalf("before: %d %s", r.status, r.raw)
	}
	// a small poster: the image encoder's part of the embedding (bundle's image_mix)
	img := image.NewRGBA(image.Rect(0, 0, 64, 96))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	poster := buf.Bytes()
	start := time.Now()
	r := ts.do("POST", "/admin/items", "", map[string]any{"items": []any{map[string]any{"item_id": "new-western",
		"title": "Riders of the Lost Canyon (2026)", "categories": []string{"Western"},
		"text": "Riders of the Lost Canyon (2026). Western. A western about cowboys, outlaws, a sheriff and a cattle drive across the frontier."},
		map[string]any{"item_id": "new-with-poster", "title": "A film with a poster", "image": base64.StdEncoding.EncodeToString(poster)}}})
	if r.status != 201 {
		t.Fatalf("add: %d %s", r.status, r.raw)
	}
	r = ts.do("POST", "/v1/recommend", "", req)
	took := time.Since(start)
	if r.status != 200 || !slices.Contains(items(r), "new-western") {
		t.Fatalf("after the add: %d %s", r.status, r.raw)
	}
	t.Logf("added and recommended in %s", took)
	added := func(ts *testServer) []recommend.AddedItem {
		l := ts.engines.acquire()
		defer l.release()
		return l.eng.Added()
	}
	before := added(ts)[0].Embedding
	ts.client.CloseIdleConnections()
	if err := ts.Shutdown(); err != nil {
		t.Fatal(err)
	}
	ts = open()
	defer func() { ts.client.CloseIdleConnections(); ts.Shutdown() }()
	if got := added(ts); len(got) != 2 || !slices.Equal(got[0].Embedding, before) {
		t.Fatalf("after a restart: %d added items, embedding kept %v", len(got), len(got) > 0 && slices.Equal(got[0].Embedding, before))
	}
	if r := ts.do("POST", "/v1/recommend", "", req); r.status != 200 || !slices.Contains(items(r), "new-western") {
		t.Fatalf("after a restart: %d %s", r.status, r.raw)
	}
}

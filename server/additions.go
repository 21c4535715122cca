package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/server/feedback"
)

// Items added to the live catalog (POST /admin/items): the engine makes them recommendable at
// once (engine/recommend/added.go); the server keeps them in the feedback log's store, beside
// the events (bbolt's snapshot bucket, or the JetStream key-value bucket), under
// addedItemsKey, and re-adds them to every bundle it loads: at start-up and on reload.
//
// Limits: at most MaxAddItems items per request and recommend.MaxAddedItems in all; an id is
// 1 to 128 bytes of UTF-8 (as feedback's), a title at most maxTitleBytes, the text at most
// maxItemTextBytes, at most maxCategories categories of at most maxCategoryBytes each; an
// image is optional and bounded by Config.MaxImageBytes.
const (
	addedItemsKey    = "catalog/added-items"
	MaxAddItems      = 100
	maxTitleBytes    = 512
	maxItemTextBytes = 8 << 10
	maxCategories    = 32
	maxCategoryBytes = 128
)

// AddItemsRequest is POST /admin/items' body.
type AddItemsRequest struct {
	Items []NewItem `json:"items"`
}

// NewItem is one item to add: text defaults to "title. category, category" (the export's rule
// for catalog items without text); image is a base64 JPEG or PNG.
type NewItem struct {
	ItemID     string   `json:"item_id"`
	Title      string   `json:"title"`
	Categories []string `json:"categories,omitempty"`
	Text       string   `json:"text,omitempty"`
	Image      string   `json:"image,omitempty"`
}

// storedItem is an added item as kept in the store: what was sent (less the image) and the
// content embedding computed by the bundle it was added to, reused while that bundle serves.
type storedItem struct {
	Item      recommend.Item `json:"item"`
	Embedding []float32      `json:"embedding"`
	Bundle    string         `json:"bundle"` // snapshotName of the bundle that computed it
	HadImage  bool           `json:"had_image,omitempty"`
}

func checkText(field, v string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(v) == "":
		return badRequest("%s: empty", field)
	case !utf8.ValidString(v):
		return badRequest("%s: not UTF-8", field)
	case len(v) > max:
		return badRequest("%s of %d bytes exceeds the limit of %d", field, len(v), max)
	}
	return nil
}

// validate checks one item of a request (index i) against the limits above.
func (n NewItem) validate(i int) error {
	f := func(name string) string { return fmt.Sprintf("items[%d].%s", i, name) }
	if err := checkText(f("item_id"), n.ItemID, feedback.MaxIDLen, true); err != nil {
		return err
	}
	if err := checkText(f("title"), n.Title, maxTitleBytes, true); err != nil {
		return err
	}
	if err := checkText(f("text"), n.Text, maxItemTextBytes, false); err != nil {
		return err
	}
	if len(n.Categories) > maxCategories {
		return badRequest("%s: %d categories, at most %d", f("categories"), len(n.Categories), maxCategories)
	}
	for j, c := range n.Categories {
		if err := checkText(fmt.Sprintf("items[%d].categories[%d]", i, j), c, maxCategoryBytes, true); err != nil {
			return err
		}
	}
	return nil
}

// handleAddItems is POST /admin/items: validates every item, refuses ids the catalog already
// has (409), computes each content embedding with the serving bundle's encoders, stores the
// new list durably, then adds the items to the serving engine. All or nothing: on any error
// nothing is added. Additions and reloads are serialised (reloadMu), so a reload never misses
// an item added while it loads.
func (s *Server) handleAddItems(ctx *fasthttp.RequestCtx) error {
	var req AddItemsRequest
	if err := s.decode(ctx, &req); err != nil {
		return err
	}
	switch {
	case len(req.Items) == 0:
		return badRequest("items: give at least one item")
	case len(req.Items) > MaxAddItems:
		return &apiError{status: 413, code: "too_large", msg: fmt.Sprintf("%d items exceed the limit of %d per request", len(req.Items), MaxAddItems)}
	}
	seen := map[string]bool{}
	images := make([][]byte, len(req.Items))
	for i, n := range req.Items {
		if err := n.validate(i); err != nil {
			return err
		}
		if seen[n.ItemID] {
			return badRequest("items[%d].item_id %q: given twice", i, n.ItemID)
		}
		seen[n.ItemID] = true
		img, err := decodeMedia(fmt.Sprintf("items[%d].image", i), n.Image, s.cfg.MaxImageBytes)
		if err != nil {
			return err
		}
		images[i] = img
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	l := s.engines.acquire()
	if l == nil {
		return &apiError{status: 503, code: "not_ready", msg: "no model loaded", retryAfter: 1}
	}
	defer l.release()
	for i, n := range req.Items {
		if _, ok := l.eng.Row(n.ItemID); ok {
			return &apiError{status: 409, code: "exists", msg: fmt.Sprintf("items[%d].item_id %q is already in the catalog", i, n.ItemID)}
		}
	}
	c, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	stored, err := s.storedItems()
	if err != nil {
		return err
	}
	bundleKey := snapshotName(l.eng)
	add := make([]recommend.AddedItem, len(req.Items))
	for i, n := range req.Items {
		it := recommend.Item{ID: n.ItemID, Title: n.Title, Categories: n.Categories, Text: n.Text}
		v, err := l.eng.ItemEmbedding(c, recommend.NewItem{Item: it, Image: images[i]})
		if err != nil {
			return fmt.Errorf("items[%d]: %w", i, err)
		}
		add[i] = recommend.AddedItem{Item: it, Embedding: v}
		stored = append(stored, storedItem{Item: it, Embedding: v, Bundle: bundleKey, HadImage: len(images[i]) > 0})
	}
	if len(l.eng.Added())+len(add) > recommend.MaxAddedItems {
		return &apiError{status: 413, code: "too_large", msg: fmt.Sprintf("%d items added already: %d more exceed the limit of %d",
			len(l.eng.Added()), len(add), recommend.MaxAddedItems)}
	}
	if err := s.putStoredItems(stored); err != nil {
		return &apiError{status: 503, code: "log_unavailable", msg: "storing the items: " + err.Error(), retryAfter: 5}
	}
	if err := l.eng.AddItems(add); err != nil {
		// stored but refused (checked above, so not expected): take the store back
		if perr := s.putStoredItems(stored[:len(stored)-len(add)]); perr != nil {
			s.log.Error("added items: could not take back items the engine refused", "err", perr)
		}
		return err
	}
	s.m.addedItems.Set(float64(len(l.eng.Added())))
	out := make([]recommend.Item, len(add))
	for i, a := range add {
		out[i] = a.Item
		out[i].Text = ""
	}
	writeJSON(ctx, 201, map[string]any{"added": out, "added_total": len(l.eng.Added()),
		"catalog_items": len(l.eng.Items()) + len(l.eng.Added())})
	return nil
}

// storedItems reads the added items kept in the store (none when nothing was ever added).
func (s *Server) storedItems() ([]storedItem, error) {
	_, data, ok, err := s.store.GetSnapshot(addedItemsKey)
	if err != nil || !ok {
		return nil, err
	}
	var out []storedItem
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("server: added items in the store: %w", err)
	}
	return out, nil
}

func (s *Server) putStoredItems(items []storedItem) error {
	data, err := json.Marshal(items)
	if err != nil {
		return err
	}
	return s.store.PutSnapshot(addedItemsKey, s.store.LastSeq(), data)
}

// restoreAddedItems re-adds the stored items to a freshly loaded engine: with their stored
// embeddings when the same bundle computed them, else embedded again by this bundle from
// their text (an image sent with an item is not kept, so its part of the embedding is then
// lost: the log says how many). Items the bundle's own catalog now has are skipped. An
// unreadable store entry fails the load: serving without the items would lose them silently.
func (s *Server) restoreAddedItems(eng Recommender) error {
	stored, err := s.storedItems()
	if err != nil || len(stored) == 0 {
		return err
	}
	key := snapshotName(eng)
	var add []recommend.AddedItem
	reembedded, imagesLost, skipped := 0, 0, 0
	for _, st := range stored {
		if _, ok := eng.Row(st.Item.ID); ok {
			skipped++
			continue
		}
		v := st.Embedding
		if st.Bundle != key {
			c, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
			v, err = eng.ItemEmbedding(c, recommend.NewItem{Item: st.Item})
			cancel()
			if err != nil {
				return fmt.Errorf("server: added item %q: %w", st.Item.ID, err)
			}
			reembedded++
			if st.HadImage {
				imagesLost++
			}
		}
		add = append(add, recommend.AddedItem{Item: st.Item, Embedding: v})
	}
	if err := eng.AddItems(add); err != nil {
		return fmt.Errorf("server: re-adding %d stored items: %w", len(add), err)
	}
	s.m.addedItems.Set(float64(len(add)))
	s.log.Info("added items restored", "items", len(add), "embedded_again", reembedded, "images_not_kept", imagesLost,
		"now_in_bundle", skipped)
	return nil
}

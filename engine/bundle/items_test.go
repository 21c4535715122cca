package bundle

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadItems(t *testing.T) {
	p := filepath.Join(t.TempDir(), "items.jsonl")
	body := `{"item_id": "a", "title": "A", "categories": ["x"], "text": "t", "popularity": 3}` + "\n\n" +
		`{"item_id": 10}` + "\n" + `{"item_id": 2.5}` + "\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	items, err := ReadItems(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 3 || items[0].ID != "a" || items[0].Title != "A" || items[0].Popularity != 3 || items[1].ID != "10" || items[2].ID != "2.5" {
		t.Errorf("items %+v", items)
	}
	for _, bad := range []string{`{"item_id": ""}`, `{"title": "no id"}`, `{"item_id": true}`, `not json`} {
		if err := os.WriteFile(p, []byte(bad+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadItems(p); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

package bundle

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// Item is one catalog item of items.jsonl (docs/BUNDLE.md and the export's generic dataset
// format: the same file in a bundle and in a dataset folder).
type Item struct {
	ID         string   `json:"item_id"`
	Title      string   `json:"title"`
	Categories []string `json:"categories"`
	Text       string   `json:"text,omitempty"`
	// Popularity is the item's interaction count in the training data, when the file gives it.
	Popularity float64 `json:"popularity,omitempty"`
}

// ReadItems reads a catalog in the items.jsonl format, in file order (item_id as a string or a
// number; blank lines skipped). It is the Go tree's one reader of that format.
func ReadItems(path string) ([]Item, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	var items []Item
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var raw struct {
			ID         json.RawMessage `json:"item_id"`
			Title      string          `json:"title"`
			Categories []string        `json:"categories"`
			Text       string          `json:"text"`
			Popularity float64         `json:"popularity"`
		}
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			return nil, fmt.Errorf("bundle: %s line %d: %w", path, line, err)
		}
		id, err := ParseItemID(raw.ID)
		if err != nil {
			return nil, fmt.Errorf("bundle: %s line %d: %w", path, line, err)
		}
		items = append(items, Item{ID: id, Title: raw.Title, Categories: raw.Categories, Text: raw.Text, Popularity: raw.Popularity})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", path, err)
	}
	return items, nil
}

// ParseItemID accepts an id written as a JSON string (non-empty) or number, the number as
// written ("10", "10.0"), as the export's str() of the parsed value gives for integers.
func ParseItemID(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil && s != "" {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("item_id %s: want a non-empty string or a number", raw)
}

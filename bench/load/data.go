package load

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/llm4rec/llm4rec/bench/synth"
	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/eval"
)

// SyntheticDataset is n items with ids "1".."n" and generated titles, and no users.
func SyntheticDataset(n int) *eval.Dataset {
	d := &eval.Dataset{Source: fmt.Sprintf("synthetic catalog of ids 1..%d", n)}
	genres := []string{"Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Documentary"}
	for i := 1; i <= n; i++ {
		w := synth.Word(i * 7)
		d.Items = append(d.Items, bundle.Item{ID: strconv.Itoa(i), Title: fmt.Sprintf("The %s %d", strings.ToUpper(w[:1])+w[1:], i),
			Categories: []string{genres[i%len(genres)]}})
	}
	return d
}

// restrict keeps only the items whose ids are in ids (the served catalog), in users'
// histories too, and drops users left without history.
func restrict(d *eval.Dataset, ids []string) error {
	keep := make(map[string]bool, len(ids))
	for _, id := range ids {
		keep[id] = true
	}
	d.Items = slices.DeleteFunc(d.Items, func(it bundle.Item) bool { return !keep[it.ID] })
	users := d.Users[:0]
	for _, u := range d.Users {
		u.Items = slices.DeleteFunc(u.Items, func(id string) bool { return !keep[id] })
		if len(u.Items) > 0 {
			users = append(users, u)
		}
	}
	d.Users = users
	if len(d.Items) == 0 {
		return fmt.Errorf("bench: %s: no items", d.Source)
	}
	return nil
}

// queryText is a query a user might type about it: its text's first words, else its title
// and categories.
func queryText(it bundle.Item) string {
	if it.Text != "" {
		words := strings.Fields(it.Text)
		return strings.Join(words[:min(len(words), synth.TextWords)], " ")
	}
	q := "a film like " + it.Title
	if len(it.Categories) > 0 {
		q = "a " + strings.ToLower(strings.Join(it.Categories, " and ")) + " film like " + it.Title
	}
	return q
}

// RequestData picks what `bench http` draws requests from: dataDir when given (loaded
// with eval.Load, restricted to the catalog of bundleDir when that bundle has an items.jsonl),
// else the bundle's catalog, else SyntheticDataset(n). A catalog without interactions gives
// random histories.
func RequestData(dataDir, bundleDir string, n int) (*eval.Dataset, error) {
	var catalog []bundle.Item
	if bundleDir != "" {
		if p := filepath.Join(bundleDir, "items.jsonl"); exists(p) {
			var err error
			if catalog, err = bundle.ReadItems(p); err != nil {
				return nil, err
			}
		}
	}
	if dataDir == "" {
		if catalog != nil {
			return &eval.Dataset{Source: "catalog " + bundleDir + " (no interactions: random histories)", Items: catalog}, nil
		}
		if n < 1 {
			return nil, fmt.Errorf("bench: catalog size %d: want at least 1", n)
		}
		return SyntheticDataset(n), nil
	}
	d, err := eval.Load(dataDir)
	if err != nil {
		return nil, err
	}
	if catalog != nil {
		ids := make([]string, len(catalog))
		for i, it := range catalog {
			ids[i] = it.ID
		}
		if err := restrict(d, ids); err != nil {
			return nil, fmt.Errorf("bench: %s shares no item with the catalog of %s", dataDir, bundleDir)
		}
		d.Source += " (restricted to the catalog of " + bundleDir + ")"
	}
	return d, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

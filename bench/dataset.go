package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/llm4rec/llm4rec/engine/recommend"
)

// Item is one catalog item as the load generator uses it.
type Item struct {
	ID         string
	Title      string
	Text       string
	Categories []string
}

// User is one user's item ids, oldest first.
type User struct {
	ID      string
	History []string
}

// Dataset is where the load generator draws histories, queries and feedback from.
type Dataset struct {
	// Source says where the data came from, for the report.
	Source string
	Items  []Item
	// Users may be empty (a catalog without interactions): histories are then random items.
	Users []User
}

// LoadDataset reads dir, which is a generic-format dataset (items.jsonl, interactions.csv;
// docs/BUNDLE.md and the design's "generic dataset format"), a model bundle (items.jsonl
// alone) or a raw MovieLens-100K folder (u.item, u.data).
func LoadDataset(dir string) (*Dataset, error) {
	switch {
	case exists(filepath.Join(dir, "items.jsonl")):
		items, err := readCatalog(filepath.Join(dir, "items.jsonl"))
		if err != nil {
			return nil, err
		}
		d := &Dataset{Source: "generic dataset " + dir, Items: items}
		if p := filepath.Join(dir, "interactions.csv"); exists(p) {
			if d.Users, err = readInteractionsCSV(p); err != nil {
				return nil, err
			}
		} else {
			d.Source = "catalog " + dir + " (no interactions: random histories)"
		}
		return d, d.check()
	case exists(filepath.Join(dir, "u.item")) && exists(filepath.Join(dir, "u.data")):
		d := &Dataset{Source: "MovieLens-100K " + dir}
		var err error
		if d.Items, err = readMovieLensItems(dir); err != nil {
			return nil, err
		}
		if d.Users, err = readMovieLensRatings(filepath.Join(dir, "u.data")); err != nil {
			return nil, err
		}
		return d, d.check()
	}
	return nil, fmt.Errorf("bench: %s holds neither items.jsonl (generic dataset or bundle) nor u.item and u.data (MovieLens-100K)", dir)
}

// SyntheticDataset is n items with ids "1".."n" and generated titles, and no users.
func SyntheticDataset(n int) *Dataset {
	d := &Dataset{Source: fmt.Sprintf("synthetic catalog of ids 1..%d", n)}
	genres := []string{"Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Documentary"}
	for i := 1; i <= n; i++ {
		w := queryWords[(i*7)%len(queryWords)]
		d.Items = append(d.Items, Item{ID: strconv.Itoa(i), Title: fmt.Sprintf("The %s %d", strings.ToUpper(w[:1])+w[1:], i),
			Categories: []string{genres[i%len(genres)]}})
	}
	return d
}

// Restrict keeps only the items whose ids are in ids (the served catalog), in users'
// histories too, and drops users left without history.
func (d *Dataset) Restrict(ids []string) error {
	keep := make(map[string]bool, len(ids))
	for _, id := range ids {
		keep[id] = true
	}
	d.Items = slices.DeleteFunc(d.Items, func(it Item) bool { return !keep[it.ID] })
	users := d.Users[:0]
	for _, u := range d.Users {
		u.History = slices.DeleteFunc(u.History, func(id string) bool { return !keep[id] })
		if len(u.History) > 0 {
			users = append(users, u)
		}
	}
	d.Users = users
	return d.check()
}

func (d *Dataset) check() error {
	if len(d.Items) == 0 {
		return fmt.Errorf("bench: %s: no items", d.Source)
	}
	return nil
}

// QueryText is a query a user might type about it: its text's first words, else its title
// and categories.
func (it Item) QueryText() string {
	if it.Text != "" {
		words := strings.Fields(it.Text)
		return strings.Join(words[:min(len(words), TextWords)], " ")
	}
	q := "a film like " + it.Title
	if len(it.Categories) > 0 {
		q = "a " + strings.ToLower(strings.Join(it.Categories, " and ")) + " film like " + it.Title
	}
	return q
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// readCatalog reads an items.jsonl with the engine's reader.
func readCatalog(path string) ([]Item, error) {
	its, err := recommend.ReadItems(path)
	if err != nil {
		return nil, err
	}
	items := make([]Item, len(its))
	for i, it := range its {
		items[i] = Item{ID: it.ID, Title: it.Title, Text: it.Text, Categories: it.Categories}
	}
	return items, nil
}

// jsonID is the engine's item-id rule: a JSON string or number.
func jsonID(raw json.RawMessage) (string, error) { return recommend.ParseItemID(raw) }

type event struct {
	item string
	ts   float64
}

// readInteractionsCSV reads user_id,item_id,timestamp[,rating] with a header line, ordering
// each user's items by timestamp (ties by item id).
func readInteractionsCSV(path string) ([]User, error) {
	raw, err := readTimedCSV(path)
	if err != nil {
		return nil, err
	}
	return usersOfEvents(raw), nil
}

// usersOfEvents groups timed events by user, in order of first appearance.
func usersOfEvents(raw []rawEvent) []User {
	by := map[string][]event{}
	var order []string
	for _, e := range raw {
		if _, ok := by[e.user]; !ok {
			order = append(order, e.user)
		}
		by[e.user] = append(by[e.user], event{e.item, float64(e.ts)})
	}
	return usersOf(by, order)
}

func usersOf(by map[string][]event, order []string) []User {
	users := make([]User, 0, len(order))
	for _, u := range order {
		evs := by[u]
		slices.SortStableFunc(evs, func(a, b event) int {
			if a.ts != b.ts {
				if a.ts < b.ts {
					return -1
				}
				return 1
			}
			return compareIDs(a.item, b.item)
		})
		h := make([]string, len(evs))
		for i, e := range evs {
			h[i] = e.item
		}
		users = append(users, User{ID: u, History: h})
	}
	return users
}

// compareIDs orders ids numerically when both are numbers, else as strings.
func compareIDs(a, b string) int {
	x, err1 := strconv.ParseInt(a, 10, 64)
	y, err2 := strconv.ParseInt(b, 10, 64)
	if err1 == nil && err2 == nil {
		return int(min(max(x-y, -1), 1))
	}
	return strings.Compare(a, b)
}

var movieLensGenres = []string{"unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
	"Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
	"Thriller", "War", "Western"}

// readMovieLensItems reads u.item: id|title|date|video date|url|19 genre flags (Latin-1).
func readMovieLensItems(dir string) ([]Item, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "u.item"))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var items []Item
	for n, line := range strings.Split(latin1(raw), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) < 5 {
			return nil, fmt.Errorf("bench: u.item line %d: %d fields", n+1, len(f))
		}
		it := Item{ID: f[0], Title: f[1]}
		for g, flag := range f[5:] {
			if flag == "1" && g < len(movieLensGenres) {
				it.Categories = append(it.Categories, movieLensGenres[g])
			}
		}
		items = append(items, it)
	}
	return items, nil
}

// readMovieLensRatings reads u.data: user \t item \t rating \t unix time.
func readMovieLensRatings(path string) ([]User, error) {
	raw, err := readTimedMovieLens(path)
	if err != nil {
		return nil, err
	}
	return usersOfEvents(raw), nil
}

// latin1 decodes ISO-8859-1 bytes unless they already are valid UTF-8.
func latin1(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// LoadRequestData picks what `bench http` draws requests from: dataDir when given (restricted
// to the catalog of bundleDir when that bundle has an items.jsonl), else the bundle's
// catalog, else SyntheticDataset(n).
func LoadRequestData(dataDir, bundleDir string, n int) (*Dataset, error) {
	var catalog *Dataset
	if bundleDir != "" && exists(filepath.Join(bundleDir, "items.jsonl")) {
		c, err := LoadDataset(bundleDir)
		if err != nil {
			return nil, err
		}
		catalog = c
	}
	if dataDir == "" {
		if catalog != nil {
			return catalog, nil
		}
		if n < 1 {
			return nil, fmt.Errorf("bench: catalog size %d: want at least 1", n)
		}
		return SyntheticDataset(n), nil
	}
	d, err := LoadDataset(dataDir)
	if err != nil {
		return nil, err
	}
	if catalog != nil {
		ids := make([]string, len(catalog.Items))
		for i, it := range catalog.Items {
			ids[i] = it.ID
		}
		if err := d.Restrict(ids); err != nil {
			return nil, fmt.Errorf("bench: %s shares no item with the catalog of %s", dataDir, bundleDir)
		}
		d.Source += " (restricted to the catalog of " + bundleDir + ")"
	}
	return d, nil
}

package eval

import (
	"bufio"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/llm4rec/llm4rec/engine/bundle"
)

// Dataset is a dataset loaded as the export loads it (data.py load): the catalog in file
// order, and the users with at least one interaction on a catalog item, sorted by id, each
// user's items by time, ties by item id. Ids order by IDOrder.
type Dataset struct {
	// Source says where the data came from, for reports.
	Source string `json:"source"`
	// Generic is true for a generic-format folder (items.jsonl, interactions.csv), false for
	// raw MovieLens-100K.
	Generic bool `json:"generic"`
	// Items is the catalog in its file order; an item's row is its position.
	Items []bundle.Item `json:"-"`
	// Users may be empty: a catalog without interactions (a bundle's folder).
	Users []User `json:"-"`
	// Interactions counts the interactions kept; Dropped those on items outside the catalog.
	Interactions int `json:"interactions"`
	Dropped      int `json:"dropped,omitempty"`
}

// User is one user's interactions, oldest first (ties by item id), and attributes.
type User struct {
	ID    string
	Items []string
	Times []int64
	// Gender is the user's gender attribute, "" when unknown.
	Gender string
	// Age is the user's age band (AgeBand), "" when unknown.
	Age string
}

// AgeBand is the evaluation's age band of an age: "<25", "25-34", "35-44" or "45+".
func AgeBand(age int) string {
	switch {
	case age < 25:
		return "<25"
	case age < 35:
		return "25-34"
	case age < 45:
		return "35-44"
	}
	return "45+"
}

// Load reads dir: a generic-format dataset (items.jsonl; interactions.csv, absent for a
// catalog alone such as a bundle's folder; optional users.jsonl with
// {"user_id","attributes":{"gender","age"}}) or a raw MovieLens-100K folder (u.item, u.data,
// optional u.user). Interactions on items missing from the catalog are dropped and counted,
// as the export drops them.
func Load(dir string) (*Dataset, error) {
	d := &Dataset{}
	var raw []event
	attrs := map[string][2]string{}
	var err error
	switch {
	case exists(filepath.Join(dir, "items.jsonl")):
		d.Source, d.Generic = "generic dataset "+dir, true
		if d.Items, err = bundle.ReadItems(filepath.Join(dir, "items.jsonl")); err != nil {
			return nil, err
		}
		p := filepath.Join(dir, "interactions.csv")
		if !exists(p) {
			d.Source = "catalog " + dir + " (no interactions)"
			break
		}
		if raw, err = readInteractionsCSV(p); err != nil {
			return nil, err
		}
		if p := filepath.Join(dir, "users.jsonl"); exists(p) {
			if attrs, err = readUsersJSONL(p); err != nil {
				return nil, err
			}
		}
	case exists(filepath.Join(dir, "u.item")) && exists(filepath.Join(dir, "u.data")):
		d.Source = "MovieLens-100K " + dir
		if d.Items, err = readMovieLensItems(filepath.Join(dir, "u.item")); err != nil {
			return nil, err
		}
		if raw, err = readMovieLensData(filepath.Join(dir, "u.data")); err != nil {
			return nil, err
		}
		if p := filepath.Join(dir, "u.user"); exists(p) {
			if attrs, err = readMovieLensUsers(p); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("eval: %s holds neither items.jsonl (generic dataset or bundle) nor u.item and u.data (MovieLens-100K)", dir)
	}
	if len(d.Items) == 0 {
		return nil, fmt.Errorf("eval: %s: no items", dir)
	}
	if err := d.group(raw, attrs); err != nil {
		return nil, fmt.Errorf("eval: %s: %w", dir, err)
	}
	return d, nil
}

// group keeps the events on catalog items, groups them by user and orders users and events
// as data.py does.
func (d *Dataset) group(raw []event, attrs map[string][2]string) error {
	known := make(map[string]bool, len(d.Items))
	ids := make([]string, len(d.Items))
	for i, it := range d.Items {
		if known[it.ID] {
			return fmt.Errorf("item id %q appears twice in the catalog", it.ID)
		}
		known[it.ID], ids[i] = true, it.ID
	}
	byUser := map[string]*User{}
	var users []string
	for _, e := range raw {
		if !known[e.item] {
			d.Dropped++
			continue
		}
		u := byUser[e.user]
		if u == nil {
			u = &User{ID: e.user}
			byUser[e.user] = u
			users = append(users, e.user)
		}
		u.Items = append(u.Items, e.item)
		u.Times = append(u.Times, e.ts)
		d.Interactions++
	}
	slices.SortFunc(users, IDOrder(users))
	itemCmp := IDOrder(ids)
	for _, id := range users {
		u := byUser[id]
		order := make([]int, len(u.Items))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int {
			if c := cmp.Compare(u.Times[a], u.Times[b]); c != 0 {
				return c
			}
			return itemCmp(u.Items[a], u.Items[b])
		})
		items, times := make([]string, len(order)), make([]int64, len(order))
		for i, j := range order {
			items[i], times[i] = u.Items[j], u.Times[j]
		}
		u.Items, u.Times = items, times
		if a, ok := attrs[id]; ok {
			u.Gender, u.Age = a[0], a[1]
		}
		d.Users = append(d.Users, *u)
	}
	return nil
}

// CatalogRow maps an item id to its row in the data's own catalog, for Split when the
// catalog ranked is the data's.
func (d *Dataset) CatalogRow() func(id string) (int, bool) {
	rows := make(map[string]int, len(d.Items))
	for i, it := range d.Items {
		rows[it.ID] = i
	}
	return func(id string) (int, bool) { r, ok := rows[id]; return r, ok }
}

// IDOrder is the export's id order (data.py _id_key), decided once for a whole set of ids:
// when every id of the set is an integer (an optional minus sign, then digits) ids compare by
// value, then as strings ("007" before "7", as Python's key (int(s), s) does); otherwise they
// compare as strings.
func IDOrder(set []string) func(a, b string) int {
	for _, s := range set {
		t := strings.TrimPrefix(s, "-")
		if t == "" || strings.TrimLeft(t, "0123456789") != "" {
			return strings.Compare
		}
	}
	return func(a, b string) int {
		if c := compareIntegers(a, b); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	}
}

// compareIntegers compares two integers written in decimal, of any length.
func compareIntegers(a, b string) int {
	na, ma := integerParts(a)
	nb, mb := integerParts(b)
	if na != nb {
		if na {
			return -1
		}
		return 1
	}
	c := len(ma) - len(mb)
	if c == 0 {
		c = strings.Compare(ma, mb)
	}
	if na {
		c = -c
	}
	return max(-1, min(1, c))
}

// integerParts is an integer's sign (true: below zero) and its digits without leading zeros.
func integerParts(s string) (bool, string) {
	m := strings.TrimLeft(strings.TrimPrefix(s, "-"), "0")
	return strings.HasPrefix(s, "-") && m != "", m
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

type event struct {
	user, item string
	ts         int64
}

// timestamp reads a time as the export does: int(float(s)).
func timestamp(s string) (int64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 9e18 {
		return 0, fmt.Errorf("timestamp %q out of range", s)
	}
	return int64(math.Trunc(f)), nil
}

// readInteractionsCSV reads interactions.csv (user_id,item_id,timestamp[,rating], header line).
func readInteractionsCSV(path string) ([]event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("eval: %s: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	ui, ok1 := col["user_id"]
	ii, ok2 := col["item_id"]
	ti, ok3 := col["timestamp"]
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("eval: %s: header %v lacks user_id, item_id or timestamp", path, header)
	}
	var out []event
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("eval: %s: %w", path, err)
		}
		if len(rec) <= max(ui, ii, ti) {
			return nil, fmt.Errorf("eval: %s line %d: %d fields", path, line, len(rec))
		}
		ts, err := timestamp(rec[ti])
		if err != nil {
			return nil, fmt.Errorf("eval: %s line %d: timestamp: %w", path, line, err)
		}
		out = append(out, event{user: rec[ui], item: rec[ii], ts: ts})
	}
	return out, nil
}

// readUsersJSONL reads users.jsonl: {"user_id", "attributes": {"gender"?, "age"?}} per line.
// A gender is kept as written (numbers as their text); an age must be an integer (a number is
// truncated, as Python's int() does) or it counts as unknown.
func readUsersJSONL(path string) (map[string][2]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	defer f.Close()
	out := map[string][2]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var rec struct {
			ID         json.RawMessage            `json:"user_id"`
			Attributes map[string]json.RawMessage `json:"attributes"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("eval: %s line %d: %w", path, line, err)
		}
		id, err := bundle.ParseItemID(rec.ID)
		if err != nil {
			return nil, fmt.Errorf("eval: %s line %d: user_id: %w", path, line, err)
		}
		out[id] = [2]string{attrText(rec.Attributes["gender"]), attrAgeBand(rec.Attributes["age"])}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("eval: %s: %w", path, err)
	}
	return out, nil
}

func attrText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

func attrAgeBand(raw json.RawMessage) string {
	var f float64
	if json.Unmarshal(raw, &f) == nil && string(raw) != "null" {
		return AgeBand(int(math.Trunc(f)))
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if a, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			return AgeBand(a)
		}
	}
	return ""
}

var movieLensGenres = []string{"unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
	"Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
	"Thriller", "War", "Western"}

// readMovieLensItems reads u.item: id|title|date|video date|url|19 genre flags (Latin-1).
func readMovieLensItems(path string) ([]bundle.Item, error) {
	lines, err := latin1Lines(path)
	if err != nil {
		return nil, err
	}
	var items []bundle.Item
	for n, line := range lines {
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) < 5 {
			return nil, fmt.Errorf("eval: %s line %d: %d fields", path, n+1, len(f))
		}
		it := bundle.Item{ID: f[0], Title: f[1]}
		for g, flag := range f[5:] {
			if flag == "1" && g < len(movieLensGenres) {
				it.Categories = append(it.Categories, movieLensGenres[g])
			}
		}
		items = append(items, it)
	}
	return items, nil
}

// readMovieLensData reads u.data: user \t item \t rating \t unix time.
func readMovieLensData(path string) ([]event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	defer f.Close()
	var out []event
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 {
			continue
		}
		if len(fs) < 4 {
			return nil, fmt.Errorf("eval: %s line %d: %d fields", path, line, len(fs))
		}
		ts, err := timestamp(fs[3])
		if err != nil {
			return nil, fmt.Errorf("eval: %s line %d: %w", path, line, err)
		}
		out = append(out, event{user: fs[0], item: fs[1], ts: ts})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("eval: %s: %w", path, err)
	}
	return out, nil
}

// readMovieLensUsers reads u.user: id|age|gender|occupation|zip.
func readMovieLensUsers(path string) (map[string][2]string, error) {
	lines, err := latin1Lines(path)
	if err != nil {
		return nil, err
	}
	out := map[string][2]string{}
	for n, line := range lines {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) < 3 {
			return nil, fmt.Errorf("eval: %s line %d: %d fields", path, n+1, len(f))
		}
		band := ""
		if age, err := strconv.Atoi(strings.TrimSpace(f[1])); err == nil {
			band = AgeBand(age)
		}
		out[f[0]] = [2]string{f[2], band}
	}
	return out, nil
}

// latin1Lines reads a file's lines, decoding ISO-8859-1 unless the file is valid UTF-8.
func latin1Lines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	s := string(b)
	if !utf8.Valid(b) {
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		s = string(r)
	}
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], "\r")
	}
	return lines, nil
}

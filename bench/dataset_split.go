package bench

import (
	"bufio"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// EvalData is a dataset loaded for offline evaluation: every interaction with its time, each
// user's attributes, in the order the export's evaluation uses
// (export/llm4rec_export/data.py): users sorted by id, each user's items by time, ties by
// item id; ids compare as numbers when every id of their kind is a number, else as strings.
type EvalData struct {
	// Source says where the data came from, for reports.
	Source string `json:"source"`
	// Generic is true for a generic-format folder (items.jsonl, interactions.csv), false for
	// raw MovieLens-100K.
	Generic bool `json:"generic"`
	// ItemIDs is the data's catalog in its file order.
	ItemIDs []string `json:"-"`
	// Users are the users with at least one interaction on a catalog item.
	Users []EvalUser `json:"-"`
	// Interactions counts the interactions kept; Dropped those on items outside the catalog.
	Interactions int `json:"interactions"`
	Dropped      int `json:"dropped,omitempty"`
	// NumericItemIDs says whether item ids order as numbers (every catalog id is one).
	NumericItemIDs bool `json:"-"`
}

// EvalUser is one user's interactions, oldest first (ties by item id), and attributes.
type EvalUser struct {
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

// LoadEvalData reads a generic-format dataset (items.jsonl, interactions.csv, optional
// users.jsonl with {"user_id","attributes":{"gender","age"}}) or a raw MovieLens-100K folder
// (u.item, u.data, optional u.user). Interactions on items missing from the catalog are
// dropped, as the export drops them.
func LoadEvalData(dir string) (*EvalData, error) {
	d := &EvalData{}
	var raw []rawEvent
	attrs := map[string][2]string{}
	switch {
	case exists(filepath.Join(dir, "items.jsonl")) && exists(filepath.Join(dir, "interactions.csv")):
		d.Source, d.Generic = "generic dataset "+dir, true
		items, err := readCatalog(filepath.Join(dir, "items.jsonl"))
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			d.ItemIDs = append(d.ItemIDs, it.ID)
		}
		if raw, err = readTimedCSV(filepath.Join(dir, "interactions.csv")); err != nil {
			return nil, err
		}
		if p := filepath.Join(dir, "users.jsonl"); exists(p) {
			if attrs, err = readUsersJSONL(p); err != nil {
				return nil, err
			}
		}
	case exists(filepath.Join(dir, "u.item")) && exists(filepath.Join(dir, "u.data")):
		d.Source = "MovieLens-100K " + dir
		items, err := readMovieLensItems(dir)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			d.ItemIDs = append(d.ItemIDs, it.ID)
		}
		if raw, err = readTimedMovieLens(filepath.Join(dir, "u.data")); err != nil {
			return nil, err
		}
		if p := filepath.Join(dir, "u.user"); exists(p) {
			if attrs, err = readMovieLensUsers(p); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("bench: %s holds neither items.jsonl and interactions.csv (generic dataset) nor u.item and u.data (MovieLens-100K)", dir)
	}
	known := make(map[string]bool, len(d.ItemIDs))
	for _, id := range d.ItemIDs {
		if known[id] {
			return nil, fmt.Errorf("bench: %s: item id %q appears twice in the catalog", dir, id)
		}
		known[id] = true
	}
	d.NumericItemIDs = allNumeric(d.ItemIDs)
	byUser := map[string]*EvalUser{}
	for _, e := range raw {
		if !known[e.item] {
			d.Dropped++
			continue
		}
		u := byUser[e.user]
		if u == nil {
			u = &EvalUser{ID: e.user}
			byUser[e.user] = u
		}
		u.Items = append(u.Items, e.item)
		u.Times = append(u.Times, e.ts)
		d.Interactions++
	}
	ids := make([]string, 0, len(byUser))
	for id := range byUser {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, idCompare(allNumeric(ids)))
	itemCmp := idCompare(d.NumericItemIDs)
	for _, id := range ids {
		u := byUser[id]
		order := make([]int, len(u.Items))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int {
			if u.Times[a] != u.Times[b] {
				if u.Times[a] < u.Times[b] {
					return -1
				}
				return 1
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
	if len(d.Users) == 0 {
		return nil, fmt.Errorf("bench: %s: no interaction on a catalog item", dir)
	}
	return d, nil
}

// allNumeric reports whether every id is an integer (an optional minus sign, then digits).
func allNumeric(ids []string) bool {
	for _, s := range ids {
		t := strings.TrimPrefix(s, "-")
		if t == "" || strings.TrimLeft(t, "0123456789") != "" {
			return false
		}
	}
	return true
}

// idCompare orders ids as the export does: by integer value (then as strings) when numeric,
// else as strings.
func idCompare(numeric bool) func(a, b string) int {
	if !numeric {
		return strings.Compare
	}
	return func(a, b string) int {
		x, errX := strconv.ParseInt(a, 10, 64)
		y, errY := strconv.ParseInt(b, 10, 64)
		if errX == nil && errY == nil && x != y {
			if x < y {
				return -1
			}
			return 1
		}
		if errX != nil || errY != nil { // beyond int64: longer magnitude is larger
			if c := compareBigInts(a, b); c != 0 {
				return c
			}
		}
		return strings.Compare(a, b)
	}
}

func compareBigInts(a, b string) int {
	na, nb := strings.HasPrefix(a, "-"), strings.HasPrefix(b, "-")
	if na != nb {
		if na {
			return -1
		}
		return 1
	}
	ma := strings.TrimLeft(strings.TrimPrefix(a, "-"), "0")
	mb := strings.TrimLeft(strings.TrimPrefix(b, "-"), "0")
	c := len(ma) - len(mb)
	if c == 0 {
		c = strings.Compare(ma, mb)
	}
	if na {
		c = -c
	}
	return max(-1, min(1, c))
}

type rawEvent struct {
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

// readTimedCSV reads interactions.csv (user_id,item_id,timestamp[,rating], header line).
func readTimedCSV(path string) ([]rawEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	ui, ok1 := col["user_id"]
	ii, ok2 := col["item_id"]
	ti, ok3 := col["timestamp"]
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("bench: %s: header %v lacks user_id, item_id or timestamp", path, header)
	}
	var out []rawEvent
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", path, err)
		}
		if len(rec) <= max(ui, ii, ti) {
			return nil, fmt.Errorf("bench: %s line %d: %d fields", path, line, len(rec))
		}
		ts, err := timestamp(rec[ti])
		if err != nil {
			return nil, fmt.Errorf("bench: %s line %d: timestamp: %w", path, line, err)
		}
		out = append(out, rawEvent{user: rec[ui], item: rec[ii], ts: ts})
	}
	return out, nil
}

// readTimedMovieLens reads u.data: user \t item \t rating \t unix time.
func readTimedMovieLens(path string) ([]rawEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	var out []rawEvent
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 {
			continue
		}
		if len(fs) < 4 {
			return nil, fmt.Errorf("bench: %s line %d: %d fields", path, line, len(fs))
		}
		ts, err := timestamp(fs[3])
		if err != nil {
			return nil, fmt.Errorf("bench: %s line %d: %w", path, line, err)
		}
		out = append(out, rawEvent{user: fs[0], item: fs[1], ts: ts})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	return out, nil
}

// readMovieLensUsers reads u.user: id|age|gender|occupation|zip.
func readMovieLensUsers(path string) (map[string][2]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	out := map[string][2]string{}
	for n, line := range strings.Split(latin1(raw), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) < 3 {
			return nil, fmt.Errorf("bench: %s line %d: %d fields", path, n+1, len(f))
		}
		band := ""
		if age, err := strconv.Atoi(strings.TrimSpace(f[1])); err == nil {
			band = AgeBand(age)
		}
		out[f[0]] = [2]string{f[2], band}
	}
	return out, nil
}

// readUsersJSONL reads users.jsonl: {"user_id", "attributes": {"gender"?, "age"?}} per line.
// A gender is kept as written (numbers as their text); an age must be an integer (a number is
// truncated, as Python's int() does) or it counts as unknown.
func readUsersJSONL(path string) (map[string][2]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
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
			return nil, fmt.Errorf("bench: %s line %d: %w", path, line, err)
		}
		id, err := jsonID(rec.ID)
		if err != nil {
			return nil, fmt.Errorf("bench: %s line %d: user_id: %w", path, line, err)
		}
		out[id] = [2]string{attrText(rec.Attributes["gender"]), attrAgeBand(rec.Attributes["age"])}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	return out, nil
}

func attrText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
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
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil {
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

// Fingerprint is the export's dataset fingerprint (data.py): sha256 over the list, sorted by
// path components, of "relative/path\x00sha256-hex\n" of every file under dir (linked files
// included).
func Fingerprint(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		regular := e.Type().IsRegular()
		if e.Type()&fs.ModeSymlink != 0 { // a linked file counts, as Python's is_file() says
			st, err := os.Stat(p)
			regular = err == nil && st.Mode().IsRegular()
		}
		if regular {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("bench: fingerprint %s: %w", dir, err)
	}
	// Python sorts the paths part by part ("a/b" before "a-c")
	slices.SortFunc(files, func(a, b string) int { return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/")) })
	h := sha256.New()
	for _, rel := range files {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return "", fmt.Errorf("bench: fingerprint: %w", err)
		}
		fh := sha256.New()
		_, err = io.Copy(fh, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("bench: fingerprint: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%s\n", rel, hex.EncodeToString(fh.Sum(nil)))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// SplitUser is one user's leave-one-out split over catalog rows: the last interaction by time
// is the test item, the one before it validation, the rest training. Users with fewer than
// three interactions only train (Val and Test are -1).
type SplitUser struct {
	ID              string
	Train           []int
	Val, Test       int
	ValTime         int64
	TestTime        int64
	Gender, AgeBand string
}

// TestHistory is what the user had before the test item: training then validation.
func (u SplitUser) TestHistory() []int {
	if u.Val < 0 {
		return u.Train
	}
	return append(slices.Clip(u.Train), u.Val)
}

// Split maps the data's items to catalog rows with row (interactions on items it does not know
// are dropped and counted, as the export drops items missing from its catalog; users left
// without interactions are dropped) and splits every user leave-one-out by time.
func (d *EvalData) Split(row func(id string) (int, bool)) (users []SplitUser, dropped int) {
	for _, u := range d.Users {
		var rows []int
		var times []int64
		for i, id := range u.Items {
			r, ok := row(id)
			if !ok {
				dropped++
				continue
			}
			rows = append(rows, r)
			times = append(times, u.Times[i])
		}
		if len(rows) == 0 {
			continue
		}
		s := SplitUser{ID: u.ID, Val: -1, Test: -1, Gender: u.Gender, AgeBand: u.Age}
		if n := len(rows); n >= 3 {
			s.Train = rows[:n-2]
			s.Val, s.ValTime = rows[n-2], times[n-2]
			s.Test, s.TestTime = rows[n-1], times[n-1]
		} else {
			s.Train = rows
		}
		users = append(users, s)
	}
	return users, dropped
}

package eval

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// SplitUser is one user's leave-one-out split over catalog rows (data.py split): the last
// interaction by time is the test item, the one before it validation, the rest training.
// Users with fewer than three interactions only train (Val and Test are -1).
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

// Split maps the data's items to catalog rows with row (d.CatalogRow for the data's own
// catalog; interactions on items row does not know are dropped and counted, as the export
// drops items missing from its catalog; users left without interactions are dropped) and
// splits every user leave-one-out by time, users in the data's order.
func (d *Dataset) Split(row func(id string) (int, bool)) (users []SplitUser, dropped int) {
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

// Fingerprint is the export's dataset fingerprint (data.py fingerprint): sha256 over the
// list, sorted by path components, of "relative/path\x00sha256-hex\n" of every file under dir
// (linked files included).
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
		return "", fmt.Errorf("eval: fingerprint %s: %w", dir, err)
	}
	// Python sorts the paths part by part ("a/b" before "a-c")
	slices.SortFunc(files, func(a, b string) int { return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/")) })
	h := sha256.New()
	for _, rel := range files {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return "", fmt.Errorf("eval: fingerprint: %w", err)
		}
		fh := sha256.New()
		_, err = io.Copy(fh, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("eval: fingerprint: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%s\n", rel, hex.EncodeToString(fh.Sum(nil)))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

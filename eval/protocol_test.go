package eval

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// protocolDir holds the fixtures the export's tests check too (export/tests/test_protocol.py).
var protocolDir = filepath.Join("..", "testdata", "protocol")

type protocolFixture struct {
	Tolerance float64 `json:"tolerance"`
	Datasets  map[string]struct {
		Interactions int      `json:"interactions"`
		Dropped      int      `json:"dropped"`
		Items        []string `json:"items"`
		Fingerprint  string   `json:"fingerprint"`
		Users        []struct {
			ID          string   `json:"id"`
			Items       []string `json:"items"`
			Times       []int64  `json:"times"`
			Train       []int    `json:"train"`
			Val         int      `json:"val"`
			Test        int      `json:"test"`
			Gender, Age *string
		} `json:"users"`
	} `json:"datasets"`
	TopK []struct {
		Scores  [][]float64 `json:"scores"`
		Exclude [][]int     `json:"exclude"`
		K       int         `json:"k"`
		Want    [][]int     `json:"want"`
	} `json:"top_k"`
	Metrics []struct {
		Top     [][]int              `json:"top"`
		Targets []int                `json:"targets"`
		ItemEmb [][]float32          `json:"item_emb"`
		Pop     []float64            `json:"pop"`
		Groups  map[string][]*string `json:"groups"`
		Want    Metrics              `json:"want"`
	} `json:"metrics"`
	ItemKNN []struct {
		Train      [][]int     `json:"train"`
		Histories  [][]int     `json:"histories"`
		N          int         `json:"n"`
		Neighbours int         `json:"neighbours"`
		Shrink     float32     `json:"shrink"`
		Want       [][]float64 `json:"want"`
	} `json:"item_knn"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func strs(ps []*string) []string {
	if ps == nil {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = str(p)
	}
	return out
}

// TestProtocolFixtures holds the package to the figures of testdata/protocol, which the
// export's own loading, split, top-k, metrics and item-kNN give.
func TestProtocolFixtures(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(protocolDir, "protocol.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx protocolFixture
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	if len(fx.Datasets) < 2 || len(fx.TopK) == 0 || len(fx.Metrics) == 0 || len(fx.ItemKNN) == 0 || fx.Tolerance <= 0 {
		t.Fatalf("protocol.json lacks cases: %d datasets, %d top-k, %d metrics, %d item-kNN, tolerance %g",
			len(fx.Datasets), len(fx.TopK), len(fx.Metrics), len(fx.ItemKNN), fx.Tolerance)
	}
	tol := fx.Tolerance
	close := func(a, b float64) bool { return math.Abs(a-b) <= tol }
	for name, want := range fx.Datasets {
		dir := filepath.Join(protocolDir, name)
		d, err := Load(dir)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ids := make([]string, len(d.Items))
		for i, it := range d.Items {
			ids[i] = it.ID
		}
		if d.Interactions != want.Interactions || d.Dropped != want.Dropped || !slices.Equal(ids, want.Items) {
			t.Errorf("%s: %d interactions, %d dropped, items %v; want %d, %d, %v", name, d.Interactions, d.Dropped, ids,
				want.Interactions, want.Dropped, want.Items)
		}
		if fp, err := Fingerprint(dir); err != nil || fp != want.Fingerprint {
			t.Errorf("%s: fingerprint %s, %v; want %s", name, fp, err, want.Fingerprint)
		}
		split, dropped := d.Split(d.CatalogRow())
		if dropped != 0 || len(split) != len(want.Users) || len(d.Users) != len(want.Users) {
			t.Fatalf("%s: %d users (%d split, %d dropped), want %d", name, len(d.Users), len(split), dropped, len(want.Users))
		}
		for i, w := range want.Users {
			u, s := d.Users[i], split[i]
			if u.ID != w.ID || !slices.Equal(u.Items, w.Items) || !slices.Equal(u.Times, w.Times) {
				t.Errorf("%s user %d: %s %v %v, want %s %v %v", name, i, u.ID, u.Items, u.Times, w.ID, w.Items, w.Times)
			}
			if !slices.Equal(s.Train, w.Train) || s.Val != w.Val || s.Test != w.Test {
				t.Errorf("%s user %s: split %v/%d/%d, want %v/%d/%d", name, w.ID, s.Train, s.Val, s.Test, w.Train, w.Val, w.Test)
			}
			if s.Gender != str(w.Gender) || s.AgeBand != str(w.Age) {
				t.Errorf("%s user %s: groups %q %q, want %q %q", name, w.ID, s.Gender, s.AgeBand, str(w.Gender), str(w.Age))
			}
		}
	}
	for c, tc := range fx.TopK {
		for u, score := range tc.Scores {
			excl := make([]bool, len(score))
			mark(excl, tc.Exclude[u], true)
			if got := TopK(score, excl, tc.K); !slices.Equal(got, tc.Want[u]) {
				t.Errorf("top-k case %d row %d: %v, want %v", c, u, got, tc.Want[u])
			}
		}
	}
	for c, tc := range fx.Metrics {
		dim := len(tc.ItemEmb[0])
		var emb []float32
		for _, v := range tc.ItemEmb {
			emb = append(emb, v...)
		}
		got := ListMetrics(tc.Top, tc.Targets, emb, dim, tc.Pop, strs(tc.Groups["gender"]), strs(tc.Groups["age"]))
		w := tc.Want
		if got.Users != w.Users || !close(got.HR, w.HR) || !close(got.NDCG, w.NDCG) || !close(got.Coverage, w.Coverage) ||
			!close(got.ILD, w.ILD) || !close(got.ARP, w.ARP) || got.GenderGapPair != w.GenderGapPair ||
			(got.GenderGap == nil) != (w.GenderGap == nil) || (got.AgeGap == nil) != (w.AgeGap == nil) ||
			len(got.NDCGByGender) != len(w.NDCGByGender) || len(got.NDCGByAge) != len(w.NDCGByAge) {
			t.Errorf("metrics case %d: %+v\nwant %+v", c, got, w)
			continue
		}
		if w.GenderGap != nil && !close(*got.GenderGap, *w.GenderGap) || w.AgeGap != nil && !close(*got.AgeGap, *w.AgeGap) {
			t.Errorf("metrics case %d: gaps %v %v, want %v %v", c, got.GenderGap, got.AgeGap, w.GenderGap, w.AgeGap)
		}
		for _, by := range [][2]map[string]float64{{got.NDCGByGender, w.NDCGByGender}, {got.NDCGByAge, w.NDCGByAge}} {
			for g, v := range by[1] {
				if x, ok := by[0][g]; !ok || !close(x, v) {
					t.Errorf("metrics case %d: group %s NDCG %v, want %v", c, g, x, v)
				}
			}
		}
	}
	for c, tc := range fx.ItemKNN {
		m := NewItemKNN(tc.Train, tc.N, tc.Neighbours, tc.Shrink)
		out := make([]float64, tc.N)
		for u, h := range tc.Histories {
			m.Scores(h, out)
			for i, v := range tc.Want[u] {
				if !close(out[i], v) {
					t.Errorf("item-kNN case %d history %v: scores %v, want %v", c, h, out, tc.Want[u])
					break
				}
			}
		}
	}
}

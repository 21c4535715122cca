package eval

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// The metrics of three lists worked out by hand (a fourth user without a held-out item is
// skipped).
func TestListMetricsByHand(t *testing.T) {
	// 2-d embeddings: 0 = x, 1 = y, 2 = x+y (cos 1/√2 to both), 3..5 = x, 6 = -y, 9 = y
	emb := []float32{1, 0, 0, 1, 2, 2, 1, 0, 1, 0, 1, 0, 0, -1, 0, 1, 0, 1, 0, 1}
	pop := make([]float64, 10)
	for i := range pop {
		pop[i] = float64(i) / 10
	}
	tops := [][]int{{0, 1, 2}, {3, 4, 5}, {0, 3, 6}, {9, 8, 7}}
	targets := []int{1, 3, 9, -1}
	gender := []string{"M", "F", "F", "F"}
	age := []string{"<25", "<25", "45+", "45+"}
	m := ListMetrics(tops, targets, emb, 2, pop, gender, age)

	ndcgA, ndcgB := 1/math.Log2(3), 1.0 // hits at rank 1 and 0; user C misses
	if m.Users != 3 || !near(m.HR, 2.0/3) || !near(m.NDCG, (ndcgA+ndcgB)/3) {
		t.Errorf("users %d HR %v NDCG %v", m.Users, m.HR, m.NDCG)
	}
	if !near(m.Coverage, 0.7) { // items 0..6 of 10
		t.Errorf("coverage %v, want 0.7", m.Coverage)
	}
	// pairs: A (0, 1/√2, 1/√2), B all 1, C (1, 0, 0)
	ildA, ildB, ildC := 1-math.Sqrt2/3, 0.0, 2.0/3
	if !near(m.ILD, (ildA+ildB+ildC)/3) {
		t.Errorf("ILD %v, want %v", m.ILD, (ildA+ildB+ildC)/3)
	}
	if !near(m.ARP, (0.1+0.4+0.3)/3) {
		t.Errorf("ARP %v", m.ARP)
	}
	if m.GenderGapPair != "F-M" || !near(*m.GenderGap, (ndcgB+0)/2-ndcgA) || !near(m.NDCGByGender["F"], 0.5) {
		t.Errorf("gender %v gap %v pair %q", m.NDCGByGender, *m.GenderGap, m.GenderGapPair)
	}
	if !near(*m.AgeGap, (ndcgA+ndcgB)/2) || len(m.NDCGByAge) != 2 {
		t.Errorf("age %v gap %v", m.NDCGByAge, *m.AgeGap)
	}
	// one known group only: no group metrics; unknown groups ("") are left out
	m = ListMetrics(tops, targets, emb, 2, pop, []string{"M", "", "M", "F"}, nil)
	if m.NDCGByGender != nil || m.GenderGap != nil || m.NDCGByAge != nil || m.AgeGap != nil {
		t.Errorf("groups from one known value: %+v", m)
	}
	if NDCGOfRank(0) != 1 || !near(NDCGOfRank(9), 1/math.Log2(11)) || NDCGOfRank(-1) != 0 {
		t.Error("NDCGOfRank")
	}
	if IntraListDiversity([]int{0}, emb, 2) != 0 {
		t.Error("ILD of a one-item list")
	}
	if g := SpreadGap(map[string]float64{"<25": 0.1, "25-34": 0.4, "45+": 0.25}); !near(g, 0.3) {
		t.Errorf("spread %v", g)
	}
}

func TestTopKTiesAndExclusion(t *testing.T) {
	score := []float64{1, 3, 3, 2, 3, 0}
	if got := TopK(score, nil, 3); !slices.Equal(got, []int{1, 2, 4}) {
		t.Errorf("ties by lower row: %v", got)
	}
	if got := TopK(score, []bool{false, false, true, false, false, false}, 4); !slices.Equal(got, []int{1, 4, 3, 0}) {
		t.Errorf("excluded row 2: %v", got)
	}
	if got := TopK(score, nil, 10); len(got) != 6 || got[5] != 5 {
		t.Errorf("k beyond the catalog: %v", got)
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The split orders users and same-time items numerically ("9" before "10"), drops
// interactions on unknown items, and gives users with fewer than three interactions no
// held-out item.
func TestSplitGeneric(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"items.jsonl": `{"item_id": "1"}` + "\n" + `{"item_id": 10}` + "\n" + `{"item_id": "9"}` + "\n" + `{"item_id": "2"}` + "\n",
		"interactions.csv": "user_id,item_id,timestamp,rating\n" +
			"10,1,100,5\n10,10,50,3\n10,9,50.7,4\n10,2,200,1\n10,77,10,1\n" + // 10 and 9 at time 50
			"2,1,5,1\n2,2,6,1\n" + // two interactions only
			"3,77,1,1\n", // only an unknown item
		"users.jsonl": `{"user_id": 10, "attributes": {"gender": "F", "age": 31}}` + "\n" +
			`{"user_id": "2", "attributes": {"gender": "", "age": "17"}}` + "\n",
	})
	d, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Generic || d.Dropped != 2 || d.Interactions != 6 || len(d.Users) != 2 || d.Users[0].ID != "2" || d.Users[1].ID != "10" {
		t.Fatalf("loaded %+v", d)
	}
	u := d.Users[1]
	if !slices.Equal(u.Items, []string{"9", "10", "1", "2"}) || u.Gender != "F" || u.Age != "25-34" {
		t.Errorf("user 10: items %v (want 9 before 10 at the same time), gender %q, age %q", u.Items, u.Gender, u.Age)
	}
	if d.Users[0].Gender != "" || d.Users[0].Age != "<25" {
		t.Errorf("user 2: gender %q age %q", d.Users[0].Gender, d.Users[0].Age)
	}
	rows := map[string]int{"1": 0, "10": 1, "9": 2, "2": 3}
	split, dropped := d.Split(func(id string) (int, bool) { r, ok := rows[id]; return r, ok })
	if dropped != 0 || len(split) != 2 {
		t.Fatalf("split %+v dropped %d", split, dropped)
	}
	if s := split[1]; !slices.Equal(s.Train, []int{2, 1}) || s.Val != 0 || s.Test != 3 || s.ValTime != 100 || s.TestTime != 200 ||
		!slices.Equal(s.TestHistory(), []int{2, 1, 0}) {
		t.Errorf("user 10 split %+v", s)
	}
	if s := split[0]; s.Val != -1 || s.Test != -1 || len(s.Train) != 2 || len(s.TestHistory()) != 2 {
		t.Errorf("user 2 split %+v", s)
	}
	// the engine's catalog lacks item "2": its interactions are dropped before the split
	delete(rows, "2")
	split, dropped = d.Split(func(id string) (int, bool) { r, ok := rows[id]; return r, ok })
	if dropped != 2 || split[1].Test != 0 || split[1].Val != 1 || split[0].Test != -1 {
		t.Errorf("split without item 2: %+v, dropped %d", split, dropped)
	}
}

func TestSplitMovieLens(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"u.item": "1|A (1995)|01-Jan-1995||http://x|0|1|0\n2|B (1995)|01-Jan-1995||http://x|0|0|1\n10|C|||x|1|0|0\n",
		"u.data": "7\t10\t3\t881250949\n7\t2\t3\t881250949\n7\t1\t4\t881250950\n12\t1\t4\t1\n",
		"u.user": "7|45|M|writer|1\n12|24|F|other|2\n",
	})
	d, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.Generic || len(d.Users) != 2 || d.Users[0].ID != "7" || !slices.Equal(d.Users[0].Items, []string{"2", "10", "1"}) ||
		d.Users[0].Age != "45+" || d.Users[0].Gender != "M" || d.Users[1].Age != "<25" {
		t.Errorf("loaded %+v", d.Users)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("an empty folder loaded")
	}
}

// The export's fingerprint of a folder (computed by data.fingerprint of the export, which sorts
// paths part by part).
func TestFingerprintMatchesExport(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.txt": "x", "sub/b.txt": "y", "a/b": "z", "a-c": "w"})
	fp, err := Fingerprint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fp != "908ccc9deaac9bcaf78d1f238d734353b5a8c00489f09c0588767c59d5dc416e" {
		t.Errorf("fingerprint %s", fp)
	}
}

// The baselines on a tiny training set: most-popular by count (ties by row), item-kNN with
// similarities co/(|a||b| + shrink) worked out by hand.
func TestBaselinesByHand(t *testing.T) {
	users := []SplitUser{{Train: []int{0, 1}}, {Train: []int{0, 1, 2, 1}}, {Train: []int{2, 3}}}
	counts := TrainCounts(users, 4)
	if !slices.Equal(counts, []float64{2, 3, 2, 1}) {
		t.Fatalf("counts %v", counts)
	}
	if got := TopK(counts, []bool{false, true, false, false}, 2); !slices.Equal(got, []int{0, 2}) {
		t.Errorf("most popular without item 1: %v", got)
	}
	train := [][]int{users[0].Train, users[1].Train, users[2].Train}
	// distinct items per user: co(0,1)=2, co(0,2)=1, co(1,2)=1, co(2,3)=1, |0|=|1|=|2|=√2, |3|=1
	knn := NewItemKNN(train, 4, 4, 1)
	s := make([]float64, 4)
	knn.Scores([]int{0}, s)
	want := []float64{0, 2.0 / 3, 1.0 / 3, 0}
	for i := range want {
		if math.Abs(s[i]-want[i]) > 1e-6 {
			t.Fatalf("scores of history {0}: %v, want %v", s, want)
		}
	}
	knn.Scores([]int{0, 2, 2}, s) // a repeated history item counts once
	want = []float64{1.0 / 3, 1, 1.0 / 3, 1 / (math.Sqrt2 + 1)}
	for i := range want {
		if math.Abs(s[i]-want[i]) > 1e-6 {
			t.Fatalf("scores of history {0, 2}: %v, want %v", s, want)
		}
	}
	// one neighbour per item: 0 keeps 1, 1 keeps 0, 2 keeps 3 (0.414 > 1/3), 3 keeps 2
	knn = NewItemKNN(train, 4, 1, 1)
	knn.Scores([]int{2}, s)
	want = []float64{0, 0, 0, 1 / (math.Sqrt2 + 1)}
	for i := range want {
		if math.Abs(s[i]-want[i]) > 1e-6 {
			t.Fatalf("one neighbour, history {2}: %v, want %v", s, want)
		}
	}
	if got := TopK(s, []bool{false, false, true, false}, 3); !slices.Equal(got, []int{3, 0, 1}) {
		t.Errorf("item-kNN top 3: %v", got)
	}
}

func TestAgeBandsAndIDOrder(t *testing.T) {
	for age, band := range map[int]string{0: "<25", 24: "<25", 25: "25-34", 34: "25-34", 35: "35-44", 45: "45+", 90: "45+"} {
		if AgeBand(age) != band {
			t.Errorf("AgeBand(%d) = %q", age, AgeBand(age))
		}
	}
	// a set of integers orders by value, then as strings; one non-integer makes it strings
	num := []string{"10", "9", "-3", "007", "7", "-0", "0", "123456789012345678901234567890", "-20"}
	slices.SortStableFunc(num, IDOrder(num))
	if want := []string{"-20", "-3", "-0", "0", "007", "7", "9", "10", "123456789012345678901234567890"}; !slices.Equal(num, want) {
		t.Errorf("numeric order %v, want %v", num, want)
	}
	mixed := []string{"10", "9", "x"}
	slices.SortFunc(mixed, IDOrder(mixed))
	if !slices.Equal(mixed, []string{"10", "9", "x"}) {
		t.Errorf("string order %v", mixed)
	}
}

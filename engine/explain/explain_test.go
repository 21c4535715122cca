package explain

import (
	"reflect"
	"testing"
)

type fakeCatalog struct {
	items []Item
	sim   map[[2]int]float32
}

func (f fakeCatalog) Item(i int) Item { return f.items[i] }
func (f fakeCatalog) Similarity(a, b int) float32 {
	if s, ok := f.sim[[2]int{a, b}]; ok {
		return s
	}
	return f.sim[[2]int{b, a}]
}

type fakeSignals struct {
	co       map[[2]int]float64
	trending []int
}

func (f fakeSignals) CoOccurrence(a, b int) float64 { return f.co[[2]int{a, b}] }
func (f fakeSignals) Trending(k int) []int          { return f.trending[:min(k, len(f.trending))] }

func catalog() fakeCatalog {
	return fakeCatalog{items: []Item{
		{"1", "Toy Story (1995)", []string{"Animation", "Children's", "Comedy"}},
		{"2", "GoldenEye (1995)", []string{"Action", "Adventure", "Thriller"}},
		{"3", "Aladdin (1992)", []string{"Animation", "Children's", "Comedy", "Musical"}},
		{"4", "Heat (1995)", []string{"Action", "Crime", "Thriller"}},
		{"5", "Fargo (1996)", []string{"Crime", "Drama", "Thriller"}},
	}, sim: map[[2]int]float32{{0, 2}: 0.8, {1, 3}: 0.5, {0, 4}: 0.1}}
}

func explainer(t *testing.T, s Signals) *Explainer {
	e, err := New(catalog(), s, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEveryKindWithItsText(t *testing.T) {
	sig := fakeSignals{co: map[[2]int]float64{{1, 3}: 5}, trending: []int{4, 3}}
	e := explainer(t, sig)
	p := e.NewProfile(Request{History: []int{0, 1}, Query: "heist thriller",
		ContextScore: func(item int) (string, float32, bool) { return "query", map[int]float32{3: 0.6, 2: 0.1}[item], true }})

	// Heat: query match, trending #2, co-occurrence with GoldenEye, shared Action/Thriller
	got := e.Explain(p, 3)
	want := []Explanation{
		{Context, "context_query", `Matches your search "heist thriller".`, []string{"query"}},
		{Context, "context_trending", "Trending now (#2 this week).", []string{"4"}},
		{Similarity, "similarity_cooccurrence", "People who liked GoldenEye (1995) also liked Heat (1995).", []string{"2"}},
		// the user's top categories are Action, Adventure, Animation (ties by name); Heat has Action
		{Preference, "preference", "Because you often pick Action titles.", []string{"Action"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Heat:\n got %+v\nwant %+v", got, want)
	}

	// Aladdin: below the query threshold, not trending; similar by content to Toy Story
	got = e.Explain(p, 2)
	want = []Explanation{
		{Similarity, "similarity_embedding", "Similar to Toy Story (1995), which you enjoyed.", []string{"1"}},
		{Preference, "preference", "Because you often pick Animation titles.", []string{"Animation"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Aladdin:\n got %+v\nwant %+v", got, want)
	}
}

func TestImageAndAudioContext(t *testing.T) {
	e := explainer(t, nil)
	for modality, want := range map[string]string{"image": "Looks like the image you sent.", "audio": "Matches what you asked for by voice."} {
		p := e.NewProfile(Request{ContextScore: func(int) (string, float32, bool) { return modality, 0.9, true }})
		got := e.Explain(p, 4)
		if len(got) != 1 || got[0].Text != want || got[0].Evidence[0] != modality || got[0].Kind != Context {
			t.Fatalf("%s: %+v", modality, got)
		}
	}
	// no history, no context, no signals: nothing to say
	if got := e.Explain(e.NewProfile(Request{}), 4); len(got) != 0 {
		t.Fatalf("no evidence: %+v", got)
	}
}

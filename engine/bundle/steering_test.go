package bundle

import (
	"slices"
	"strings"
	"testing"
)

// Phrase fills the export's evaluation template (requests.py): the words of each category
// joined by a space, unknown categories spelled lower case with spaces for "-" and "_".
func TestSteeringPhrase(t *testing.T) {
	s := &SteeringSpec{Template: "recommend me a {c} {noun}", Noun: "movie",
		CategoryWords: map[string]string{"Sci-Fi": "science fiction", "Children's": "children's", "Drama": "drama"}}
	for _, c := range []struct {
		cats []string
		want string
	}{
		{[]string{"Drama"}, "recommend me a drama movie"},
		{[]string{"Sci-Fi", "Children's"}, "recommend me a science fiction children's movie"},
		{[]string{"Film-Noir", "Not_Listed"}, "recommend me a film noir not listed movie"},
		{nil, "recommend me a  movie"},
	} {
		if got := s.Phrase(c.cats); got != c.want {
			t.Errorf("Phrase(%q) = %q, want %q", c.cats, got, c.want)
		}
	}
}

// The manifest's steering section is read when present (unknown fields are errors, so the
// manifest type must know it) and nil when absent, as in older bundles.
func TestReadManifestSteering(t *testing.T) {
	m, err := ReadManifest(makeBundle(t, nil))
	if err != nil || m.Steering != nil {
		t.Fatalf("without a section: %v, %+v", err, m.Steering)
	}
	dir := makeBundle(t, func(m map[string]any) {
		m["steering"] = map[string]any{"template": "{c} {noun}s", "noun": "item", "category_words": map[string]any{"A": "a"},
			"categories": []any{"A"}, "history": 20, "users": 50, "voice": map[string]any{"name": "en", "speed": 155, "pitch": 55}}
	})
	if m, err = ReadManifest(dir); err != nil {
		t.Fatal(err)
	}
	s := m.Steering
	if s == nil || s.History != 20 || s.Users != 50 || s.Voice != (SteeringVoice{"en", 155, 55}) || s.Phrase(s.Categories) != "a items" {
		t.Errorf("steering section %+v", s)
	}
}

// The engine's required graph inputs and outputs: the committed default bundle has them; a
// manifest that renames one or reorders the outputs is told what is missing.
func TestCheckEngineIO(t *testing.T) {
	m, err := ReadManifest("../../models/movielens-100k/1")
	if err != nil {
		t.Fatal(err)
	}
	if probs := CheckEngineIO(m); len(probs) > 0 {
		t.Fatalf("default bundle: %v", probs)
	}
	f := m.Graphs[Fusion]
	f.Inputs = slices.Clone(f.Inputs)
	f.Inputs[slices.IndexFunc(f.Inputs, func(s TensorSpec) bool { return s.Name == InHistoryMask })].Name = "mask"
	f.Outputs = []TensorSpec{f.Outputs[1], f.Outputs[0]}
	m.Graphs[Fusion] = f
	probs := CheckEngineIO(m)
	if len(probs) != 2 || !strings.Contains(probs[0], `needs input "history_mask"`) || !strings.Contains(probs[1], "user_state, attention first") {
		t.Fatalf("problems %q", probs)
	}
}

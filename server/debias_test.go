package server

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDebiasStrategies: each form of the request's debias reaches the engine as the strength
// it names, the answer says what was applied, and every malformed or uncalibrated choice is
// a 400 in words. The fake bundle's default strength is 1 and it calibrates gender F at 0.5,
// M at 2.
func TestDebiasStrategies(t *testing.T) {
	ts := start(t, nil)
	type want struct {
		alpha    float64
		strategy string
		group    string
	}
	for body, w := range map[string]want{
		`{"history": ["1"]}`:                                       {1, "default", ""},
		`{"history": ["1"], "debias": true}`:                       {1, "default", ""},
		`{"history": ["1"], "debias": false}`:                      {0, "off", ""},
		`{"history": ["1"], "debias": {"popularity": 0.25}}`:       {0.25, "popularity", ""},
		`{"history": ["1"], "debias": {"popularity": 10}}`:         {10, "popularity", ""},
		`{"history": ["1"], "debias": {"group": {"gender": "F"}}}`: {0.5, "group", "F"},
		`{"history": ["1"], "debias": {"group": {"gender": "M"}}}`: {2, "group", "M"},
		`{"history": ["1"], "ips_alpha": 0.75}`:                    {0.75, "popularity", ""},
	} {
		r := ts.do("POST", "/v1/recommend", "", body)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", body, r.status, r.raw)
		}
		d, _ := r.body["debias"].(map[string]any)
		if r.body["ips_alpha"] != w.alpha || d["popularity"] != w.alpha || d["strategy"] != w.strategy {
			t.Errorf("%s: ips_alpha %v, debias %v; want strength %v by %s", body, r.body["ips_alpha"], d, w.alpha, w.strategy)
		}
		g, _ := d["group"].(map[string]any)
		if (w.group == "") != (g == nil) || (g != nil && g["gender"] != w.group) {
			t.Errorf("%s: group %v, want %q", body, g, w.group)
		}
	}
	// the strength changes the list the engine ranks (the fake ranks by popularity-corrected score)
	for _, f := range []string{"1", "2", "3"} {
		if r := ts.do("POST", "/v1/feedback", "", map[string]any{"event_id": "e" + f, "user_id": "u", "item_id": f, "type": "click", "timestamp": 1}); r.status != 200 {
			t.Fatalf("feedback: %d %s", r.status, r.raw)
		}
	}
	off := ts.do("POST", "/v1/recommend", "", `{"history": ["9"], "debias": false}`)
	strong := ts.do("POST", "/v1/recommend", "", `{"history": ["9"], "debias": {"popularity": 10}}`)
	if strings.Join(items(off), ",") == strings.Join(items(strong), ",") {
		t.Errorf("strength 0 and 10 gave the same list %v", items(off))
	}
	for body, msg := range map[string]string{
		`{"history": ["1"], "debias": {"popularity": -0.1}}`:                          "within [0, 10]",
		`{"history": ["1"], "debias": {"popularity": 10.5}}`:                          "within [0, 10]",
		`{"history": ["1"], "debias": {"popularity": 0.1, "group": {"gender": "F"}}}`: "not both",
		`{"history": ["1"], "debias": {"group": {"gender": "X"}}}`:                    `"F", "M"`,
		`{"history": ["1"], "debias": {"group": {"age": "18-24"}}}`:                   `"gender"`,
		`{"history": ["1"], "debias": {"group": {"gender": "F", "age": "1"}}}`:        "exactly one",
		`{"history": ["1"], "debias": {"group": {}}}`:                                 "exactly one",
		`{"history": ["1"], "debias": {"strength": 1}}`:                               "want true, false or an object",
		`{"history": ["1"], "debias": "popularity"}`:                                  "want true, false or an object",
		`{"history": ["1"], "debias": false, "ips_alpha": 1}`:                         "not both",
	} {
		r := ts.do("POST", "/v1/recommend", "", body)
		e, _ := r.body["error"].(map[string]any)
		if text, _ := e["message"].(string); r.status != 400 || !strings.Contains(text, msg) {
			t.Errorf("%s: %d %s, want 400 naming %q", body, r.status, r.raw, msg)
		}
	}
}

func TestDebiasFieldRoundTrip(t *testing.T) {
	half := 0.5
	for _, d := range []Debias{{}, {Off: true}, {Popularity: &half}, {Group: &GroupRef{"age", "25-34"}}} {
		raw, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var got Debias
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		again, _ := json.Marshal(got)
		if string(again) != string(raw) {
			t.Errorf("%s read back as %s", raw, again)
		}
	}
}

// TestUncalibratedBundleRefusesGroup: a bundle without ips.group_alpha answers a group
// request with 400 that says so, and still serves the other strategies.
func TestUncalibratedBundleRefusesGroup(t *testing.T) {
	ts := start(t, nil)
	l := ts.engines.acquire()
	l.eng.Manifest().IPS.GroupAlpha = nil
	l.release()
	r := ts.do("POST", "/v1/recommend", "", `{"history": ["1"], "debias": {"group": {"gender": "F"}}}`)
	if r.status != 400 || !strings.Contains(string(r.raw), "no group calibration") {
		t.Errorf("%d %s, want 400: no group calibration", r.status, r.raw)
	}
	if r := ts.do("POST", "/v1/recommend", "", `{"history": ["1"], "debias": {"popularity": 0.2}}`); r.status != 200 {
		t.Errorf("popularity on an uncalibrated bundle: %d %s", r.status, r.raw)
	}
}

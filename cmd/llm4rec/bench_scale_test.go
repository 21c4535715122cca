package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestBenchScaleFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "give --bundles or --items"},
		{[]string{"--items", "0"}, "--items"},
		{[]string{"--items", "100", "--index", "faiss"}, "unknown index"},
		{[]string{"--items", "100", "--kinds", "image"}, "--kinds"},
		{[]string{"--items", "100", "--plot"}, "--out"},
	} {
		rc, _, errs := benchRun(append([]string{"scale"}, c.args...)...)
		if rc != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: rc %d, stderr %s", c.args, rc, errs)
		}
	}
}

// The command measures a given bundle with the real engine and prints the JSON report.
func TestBenchScaleOfABundle(t *testing.T) {
	dir := defaultBundle(t)
	rc, out, errs := benchRun("scale", "--bundles", dir, "--provider", "cpu", "--intra-threads", "1", "--callers", "1",
		"--kinds", "history", "--duration", "100ms", "--json", "--quiet")
	var rep struct {
		Kind    string `json:"kind"`
		Bundles []struct {
			Items  int     `json:"items"`
			LoadS  float64 `json:"load_s"`
			RSS    float64 `json:"rss_after_load_mb"`
			Index  string  `json:"index"`
			Points []struct {
				Kind  string `json:"kind"`
				Calls int    `json:"calls"`
			} `json:"points"`
		} `json:"bundles"`
	}
	if rc != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Kind != "scale" || len(rep.Bundles) != 1 {
		t.Fatalf("rc %d\nstdout %s\nstderr %s", rc, out, errs)
	}
	b := rep.Bundles[0]
	if b.Items <= 0 || b.LoadS <= 0 || b.RSS <= 0 || b.Index != "exact" || len(b.Points) != 1 || b.Points[0].Kind != "history" || b.Points[0].Calls < 1 {
		t.Errorf("report %+v", b)
	}
}

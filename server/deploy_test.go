package server

import (
	"flag"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The deployment files (deploy/) name settings and endpoints of this package: every serve
// flag and LLM4REC_* variable they use exists, and the probes ask endpoints the server has,
// so a rename here cannot leave them broken unseen.
func TestDeployFilesMatchTheServer(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var cfg Config
	cfg.RegisterFlags(fs)
	envs := map[string]bool{}
	ct := reflect.TypeOf(cfg)
	for i := range ct.NumField() {
		if e := ct.Field(i).Tag.Get("env"); e != "" {
			envs[e] = true
		}
	}
	s := start(t, nil)
	flagRe := regexp.MustCompile(`(?m)^\s*- --([a-z][a-z0-9-]*)=`) // serve's arguments, one a line
	envRe := regexp.MustCompile(`\bLLM4REC_[A-Z0-9_]+\b`)
	pathRe := regexp.MustCompile(`path: (/[a-z/]+)`)
	for _, f := range []string{"../deploy/compose.yaml", "../deploy/k8s/llm4rec.yaml"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(raw)
		flags := flagRe.FindAllStringSubmatch(text, -1)
		if len(flags) == 0 {
			t.Fatalf("%s: no serve flags found", f)
		}
		for _, m := range flags {
			if fs.Lookup(m[1]) == nil {
				t.Errorf("%s: serve has no flag --%s", f, m[1])
			}
		}
		for _, e := range envRe.FindAllString(text, -1) {
			if !envs[e] {
				t.Errorf("%s: no setting reads %s", f, e)
			}
		}
		for _, m := range pathRe.FindAllStringSubmatch(text, -1) {
			if r := s.do("GET", m[1], "", nil); r.status != 200 {
				t.Errorf("%s: probe %s answers %d", f, m[1], r.status)
			}
		}
		if !strings.Contains(text, "nats://") {
			t.Errorf("%s: no NATS feedback log", f)
		}
	}
}

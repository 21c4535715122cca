package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestVersionListsProviders(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := run([]string{"version", "--json"}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	var v struct {
		Engine      string `json:"engine"`
		ONNXRuntime string `json:"onnxruntime"`
		Provider    string `json:"provider"`
		Providers   []struct {
			Name   string `json:"name"`
			Usable bool   `json:"usable"`
			Reason string `json:"reason"`
		} `json:"providers"`
	}
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.Engine == "" || v.ONNXRuntime != "1.29.0" || len(v.Providers) != 2 {
		t.Fatalf("version %+v", v)
	}
	for _, p := range v.Providers {
		if p.Reason == "" {
			t.Fatalf("provider %s without a reason", p.Name)
		}
	}
	out.Reset()
	if rc := run([]string{"version"}, &out, &errb); rc != 0 || !strings.Contains(out.String(), "onnxruntime 1.29.0") || !strings.Contains(out.String(), "selected: "+v.Provider) {
		t.Fatalf("rc %d, text output %q", rc, out.String())
	}
}

func TestVersionCUDAWithoutGPU(t *testing.T) {
	var out, errb bytes.Buffer
	var v struct {
		Providers []struct{ Usable bool } `json:"providers"`
	}
	run([]string{"version", "--json"}, &out, &errb)
	json.Unmarshal(out.Bytes(), &v)
	if len(v.Providers) == 2 && v.Providers[1].Usable {
		t.Skip("CUDA is usable here")
	}
	errb.Reset()
	rc := run([]string{"version", "--provider", "cuda"}, &out, &errb)
	msg := strings.TrimSpace(errb.String())
	if rc == 0 || !strings.Contains(msg, "cuda execution provider unusable: ") || strings.Contains(msg, "\n") {
		t.Fatalf("rc %d, stderr %q: want non-zero and a one-line reason", rc, msg)
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := run([]string{"frobnicate"}, &out, &errb); rc != 2 || !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Fatalf("rc %d %q", rc, errb.String())
	}
	if rc := run([]string{"version", "--provider", "tpu"}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), `unknown provider "tpu"`) {
		t.Fatalf("rc %d %q", rc, errb.String())
	}
	if rc := run([]string{"models", "validate"}, &out, &errb); rc != 2 {
		t.Fatalf("models validate without DIR: rc %d", rc)
	}
}

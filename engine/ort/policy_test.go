package ort

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
)

func TestParseProvider(t *testing.T) {
	for in, want := range map[string]Provider{"": ProviderAuto, "auto": ProviderAuto, "CUDA": ProviderCUDA, " cpu ": ProviderCPU} {
		got, err := ParseProvider(in)
		if err != nil || got != want {
			t.Errorf("ParseProvider(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseProvider("tpu"); err == nil || !strings.Contains(err.Error(), `unknown provider "tpu"`) {
		t.Errorf("ParseProvider(tpu) = %v", err)
	}
}

// On a machine without a usable GPU, auto falls back to the CPU and says why, and cuda fails
// with the reason. Where CUDA is usable the policy is checked the other way round.
func TestProviderPolicy(t *testing.T) {
	var logs bytes.Buffer
	rt, err := Open(Options{Provider: ProviderAuto, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	cuda := rt.Providers()[1]
	if cuda.Name != ProviderCUDA || cuda.Reason == "" {
		t.Fatalf("cuda status %+v: want a reason", cuda)
	}
	if !strings.Contains(logs.String(), "provider="+string(rt.Provider())) || !strings.Contains(logs.String(), "reason=") {
		t.Fatalf("decision not logged: %q", logs.String())
	}
	_, cudaErr := Open(Options{Provider: ProviderCUDA})
	if cuda.Usable {
		t.Logf("CUDA usable here: %s", cuda.Reason)
		if rt.Provider() != ProviderCUDA || cudaErr != nil {
			t.Fatalf("auto chose %s (%s), cuda policy err %v", rt.Provider(), rt.Reason(), cudaErr)
		}
		return
	}
	t.Logf("no usable CUDA: %s", cuda.Reason)
	if rt.Provider() != ProviderCPU || !strings.HasPrefix(rt.Reason(), "cuda unusable: ") || !strings.Contains(rt.Reason(), cuda.Reason) {
		t.Fatalf("auto: provider %s reason %q", rt.Provider(), rt.Reason())
	}
	if !errors.Is(cudaErr, ErrCUDAUnusable) || !strings.Contains(cudaErr.Error(), cuda.Reason) {
		t.Fatalf("cuda policy: got %v, want ErrCUDAUnusable with reason %q", cudaErr, cuda.Reason)
	}
	if strings.Contains(cudaErr.Error(), "\n") {
		t.Fatalf("reason must be one line: %q", cudaErr)
	}
}

func TestMissingLibraryIsAClearError(t *testing.T) {
	// The environment is process-wide; once initialised from one library another path is
	// refused with both paths named, and before that a missing file is named.
	_, err := Open(Options{LibraryPath: "/nonexistent/libonnxruntime.so"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/libonnxruntime.so") {
		t.Fatalf("got %v", err)
	}
}

func TestLibraryPathResolution(t *testing.T) {
	t.Setenv("ORT_LIB", "/opt/ort/libonnxruntime.so")
	if got := (Options{}).ResolveLibraryPath(); got != "/opt/ort/libonnxruntime.so" {
		t.Fatalf("ORT_LIB not used: %s", got)
	}
	if got := (Options{LibraryPath: "/x.so"}).ResolveLibraryPath(); got != "/x.so" {
		t.Fatalf("explicit path not used: %s", got)
	}
	t.Setenv("ORT_LIB", "")
	t.Setenv("LLM4REC_CACHE", "/c")
	if got := (Options{}).ResolveLibraryPath(); got != "/c/onnxruntime-1.29.0/lib/libonnxruntime.so.1" {
		t.Fatalf("default: %s", got)
	}
}

func TestSessionErrors(t *testing.T) {
	rt := openRuntime(t, ProviderCPU)
	if _, err := rt.NewSession("testdata/missing.onnx", SessionOptions{}); err == nil || !strings.Contains(err.Error(), "missing.onnx") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := rt.NewSessionFromBytes([]byte("not a model"), SessionOptions{Name: "junk"}); err == nil || !strings.Contains(err.Error(), "junk") {
		t.Fatalf("junk bytes: %v", err)
	}
	raw, err := os.ReadFile("testdata/affine.onnx")
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSessionFromBytes(raw, SessionOptions{Name: "affine"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run([]Tensor{{Name: "x", Shape: []int64{1, 4}, Float32: []float32{1, 2, 3, 4}}}); err != nil {
		t.Fatal(err)
	}
	// Closing the runtime closes its sessions.
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run([]Tensor{{Name: "x", Shape: []int64{1, 4}, Float32: []float32{1, 2, 3, 4}}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("run after runtime close: %v", err)
	}
	if _, err := rt.NewSession("testdata/affine.onnx", SessionOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("new session after close: %v", err)
	}
}

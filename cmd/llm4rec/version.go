package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"

	"github.com/llm4rec/llm4rec/engine"
	"github.com/llm4rec/llm4rec/engine/ort"
)

// runtimeFlags are the ONNX Runtime flags every command that runs graphs shares.
type runtimeFlags struct {
	provider string
	lib      string
	intra    int
	inter    int
	device   int
	tf32     bool
}

func (f *runtimeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.provider, "provider", "auto", "execution provider: auto (CUDA when usable, else CPU), cuda, cpu")
	fs.StringVar(&f.lib, "ort-lib", "", "path of libonnxruntime.so (default: $ORT_LIB, else the install of make deps)")
	fs.IntVar(&f.intra, "intra-threads", 0, "threads inside one operator (0: ONNX Runtime's default, one per core)")
	fs.IntVar(&f.inter, "inter-threads", 0, "threads across operators (0: ONNX Runtime's default)")
	fs.IntVar(&f.device, "cuda-device", 0, "CUDA device id")
	fs.BoolVar(&f.tf32, "cuda-tf32", false, "let CUDA use TF32 for float32 matrix products (faster; outputs drift from the float32 goldens by about 1e-3)")
}

func (f *runtimeFlags) open(logger *slog.Logger) (*ort.Runtime, error) {
	p, err := ort.ParseProvider(f.provider)
	if err != nil {
		return nil, err
	}
	return ort.Open(ort.Options{LibraryPath: f.lib, Provider: p, IntraOpThreads: f.intra,
		InterOpThreads: f.inter, CUDADevice: f.device, CUDATF32: f.tf32, Logger: logger})
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf runtimeFlags
	rf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := rf.open(logger)
	if err != nil {
		fmt.Fprintf(stderr, "llm4rec: %v\n", err)
		return 1
	}
	defer rt.Close()
	if *asJSON {
		out := map[string]any{
			"engine": engine.Version, "go": runtime.Version(), "onnxruntime": rt.Version(),
			"onnxruntime_library": rt.LibraryPath(), "provider": rt.Provider(), "reason": rt.Reason(),
			"providers": rt.Providers(),
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return 1
		}
		return 0
	}
	fmt.Fprintf(stdout, "llm4rec %s (%s %s/%s)\n", engine.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(stdout, "onnxruntime %s (%s)\n", rt.Version(), rt.LibraryPath())
	fmt.Fprintf(stdout, "execution providers:\n")
	for _, p := range rt.Providers() {
		state := "usable"
		if !p.Usable {
			state = "unusable"
		}
		fmt.Fprintf(stdout, "  %-5s %-8s %s\n", p.Name, state, p.Reason)
	}
	fmt.Fprintf(stdout, "selected: %s (%s)\n", rt.Provider(), rt.Reason())
	return 0
}

// Package ort is the engine's runtime over ONNX Runtime. It is the only package of the
// program that imports github.com/yalue/onnxruntime_go: everything else talks to Runtime and
// Session.
//
// One ONNX Runtime environment exists per process; it is created by the first Open and lives
// until the process exits (ONNX Runtime cannot be re-initialised from another library
// afterwards). A Runtime holds the execution-provider decision (CUDA or CPU, with the reason)
// and the thread settings that its sessions use.
package ort

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	onnx "github.com/yalue/onnxruntime_go"
)

// Provider names an execution-provider policy.
type Provider string

const (
	// ProviderAuto uses CUDA when its provider library loads and a device answers, and the
	// CPU otherwise; the choice and its reason are logged once.
	ProviderAuto Provider = "auto"
	// ProviderCUDA requires the CUDA execution provider; Open fails with the reason when it
	// is unusable.
	ProviderCUDA Provider = "cuda"
	// ProviderCPU uses the CPU execution provider only.
	ProviderCPU Provider = "cpu"
)

// ParseProvider checks a policy name given by a user.
func ParseProvider(s string) (Provider, error) {
	switch p := Provider(strings.ToLower(strings.TrimSpace(s))); p {
	case ProviderAuto, ProviderCUDA, ProviderCPU:
		return p, nil
	case "":
		return ProviderAuto, nil
	}
	return "", fmt.Errorf("ort: unknown provider %q (want auto, cuda or cpu)", s)
}

// CUDAProviderLibrary is the file name of ONNX Runtime's CUDA execution provider, looked for
// beside the core library.
const CUDAProviderLibrary = "libonnxruntime_providers_cuda.so"

// ErrCUDAUnusable is returned (wrapped, with the reason) by Open with ProviderCUDA when the
// CUDA execution provider cannot be used on this machine.
var ErrCUDAUnusable = errors.New("ort: cuda execution provider unusable")

// ErrClosed is returned by a closed Session or Runtime.
var ErrClosed = errors.New("ort: closed")

// Options configure a Runtime. The zero value is valid: library from ORT_LIB or the default
// install, provider auto, ONNX Runtime's default thread counts, device 0.
type Options struct {
	// LibraryPath is the path of libonnxruntime.so. Empty: the environment variable ORT_LIB,
	// else DefaultLibraryPath().
	LibraryPath string
	// Provider is the execution-provider policy. Empty means ProviderAuto.
	Provider Provider
	// IntraOpThreads is the number of threads one Run may use inside an operator; 0 lets
	// ONNX Runtime choose (one per physical core).
	IntraOpThreads int
	// InterOpThreads is the number of threads for running independent operators in
	// parallel; 0 lets ONNX Runtime choose.
	InterOpThreads int
	// CUDADevice is the CUDA device id used when CUDA is chosen.
	CUDADevice int
	// CUDATF32 lets CUDA run float32 matrix products in TF32 (10-bit mantissa: faster on
	// Ampere and later, relative error near 1e-3). Off by default, so that CUDA outputs match
	// the export's float32 goldens (1e-4) as the CPU's do.
	CUDATF32 bool
	// Logger receives the provider decision; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultLibraryPath is where `make deps` installs ONNX Runtime 1.29.0:
// $LLM4REC_CACHE (default ~/.cache/llm4rec)/onnxruntime-1.29.0/lib/libonnxruntime.so.1.
func DefaultLibraryPath() string {
	cache := os.Getenv("LLM4REC_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		cache = filepath.Join(home, ".cache", "llm4rec")
	}
	return filepath.Join(cache, "onnxruntime-1.29.0", "lib", "libonnxruntime.so.1")
}

// ResolveLibraryPath returns the library an Options would load: LibraryPath, else ORT_LIB,
// else DefaultLibraryPath().
func (o Options) ResolveLibraryPath() string {
	if o.LibraryPath != "" {
		return o.LibraryPath
	}
	if p := os.Getenv("ORT_LIB"); p != "" {
		return p
	}
	return DefaultLibraryPath()
}

// process-wide ONNX Runtime environment
var env struct {
	mu      sync.Mutex
	libPath string
	cuda    *ProviderStatus // result of the first CUDA probe
}

//go:embed probe.onnx
var probeModel []byte

func initEnvironment(libPath string) error {
	env.mu.Lock()
	defer env.mu.Unlock()
	if onnx.IsInitialized() {
		if env.libPath != libPath {
			return fmt.Errorf("ort: onnx runtime already initialised from %s, cannot load %s in the same process", env.libPath, libPath)
		}
		return nil
	}
	if _, err := os.Stat(libPath); err != nil {
		return fmt.Errorf("ort: onnx runtime library %s: %w (run `make deps`, or set ORT_LIB to libonnxruntime.so)", libPath, err)
	}
	onnx.SetSharedLibraryPath(libPath)
	if err := onnx.InitializeEnvironment(onnx.WithLogLevelError()); err != nil {
		return fmt.Errorf("ort: initialise onnx runtime from %s: %w", libPath, err)
	}
	env.libPath = libPath
	return nil
}

// ProviderStatus says whether an execution provider is usable here and why.
type ProviderStatus struct {
	Name   Provider `json:"name"`
	Usable bool     `json:"usable"`
	Reason string   `json:"reason"`
}

// Runtime is an opened ONNX Runtime with a resolved execution provider. It is safe for
// concurrent use. Sessions it creates stay valid after the Runtime is closed only until they
// are closed themselves; Close of the Runtime closes every session it created.
type Runtime struct {
	opts     Options
	provider Provider // ProviderCUDA or ProviderCPU
	reason   string
	cuda     ProviderStatus

	mu       sync.Mutex
	closed   bool
	sessions map[*Session]struct{}
}

// Open initialises ONNX Runtime (once per process) and resolves the provider policy.
// With ProviderCUDA it fails, wrapping ErrCUDAUnusable with the reason, when CUDA is unusable.
func Open(opts Options) (*Runtime, error) {
	if opts.Provider == "" {
		opts.Provider = ProviderAuto
	}
	if _, err := ParseProvider(string(opts.Provider)); err != nil {
		return nil, err
	}
	if opts.IntraOpThreads < 0 || opts.InterOpThreads < 0 {
		return nil, fmt.Errorf("ort: thread counts must not be negative (intra %d, inter %d)", opts.IntraOpThreads, opts.InterOpThreads)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := initEnvironment(opts.ResolveLibraryPath()); err != nil {
		return nil, err
	}
	r := &Runtime{opts: opts, sessions: map[*Session]struct{}{}}
	switch opts.Provider {
	case ProviderCPU:
		r.provider, r.reason = ProviderCPU, "cpu requested"
		r.cuda = ProviderStatus{Name: ProviderCUDA, Reason: "not probed: cpu requested"}
	case ProviderCUDA:
		r.cuda = probeCUDA(opts.CUDADevice)
		if !r.cuda.Usable {
			return nil, fmt.Errorf("%w: %s", ErrCUDAUnusable, r.cuda.Reason)
		}
		r.provider, r.reason = ProviderCUDA, "cuda requested; "+r.cuda.Reason
	case ProviderAuto:
		r.cuda = probeCUDA(opts.CUDADevice)
		if r.cuda.Usable {
			r.provider, r.reason = ProviderCUDA, r.cuda.Reason
		} else {
			r.provider, r.reason = ProviderCPU, "cuda unusable: "+r.cuda.Reason
		}
	}
	opts.Logger.Info("onnx runtime execution provider", "provider", r.provider, "policy", opts.Provider, "reason", r.reason, "library", env.libPath)
	return r, nil
}

// probeCUDA loads the CUDA execution provider into a session of a tiny embedded model and runs
// it once. The result is cached for the process: the first answer is the answer.
func probeCUDA(device int) ProviderStatus {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.cuda != nil {
		return *env.cuda
	}
	st := ProviderStatus{Name: ProviderCUDA}
	defer func() { env.cuda = &st }()
	lib := filepath.Join(filepath.Dir(env.libPath), CUDAProviderLibrary)
	if _, err := os.Stat(lib); err != nil {
		st.Reason = fmt.Sprintf("%s not found beside %s (run `make deps-cuda`)", CUDAProviderLibrary, env.libPath)
		return st
	}
	so, err := newSessionOptions(Options{CUDADevice: device}, ProviderCUDA, device)
	if err != nil {
		st.Reason = firstLine(err.Error())
		return st
	}
	defer so.Destroy()
	sess, err := onnx.NewDynamicAdvancedSessionWithONNXData(probeModel, []string{"x"}, []string{"y"}, so)
	if err != nil {
		st.Reason = firstLine(err.Error())
		return st
	}
	defer sess.Destroy()
	x, err := onnx.NewTensor(onnx.NewShape(2), []float32{1, 2})
	if err != nil {
		st.Reason = firstLine(err.Error())
		return st
	}
	defer x.Destroy()
	out := []onnx.Value{nil}
	if err := sess.Run([]onnx.Value{x}, out); err != nil {
		st.Reason = "probe run failed: " + firstLine(err.Error())
		return st
	}
	defer out[0].Destroy()
	y, ok := out[0].(*onnx.Tensor[float32])
	if !ok || len(y.GetData()) != 2 || y.GetData()[0] != 2 || y.GetData()[1] != 3 {
		st.Reason = "probe run gave a wrong answer"
		return st
	}
	st.Usable = true
	st.Reason = fmt.Sprintf("cuda execution provider loaded and device %d answered", device)
	return st
}

// firstLine shortens an ONNX Runtime error to one line without its source location, e.g.
// "Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: ...".
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndex(s, "[ONNXRuntimeError] : "); i >= 0 {
		s = s[i+len("[ONNXRuntimeError] : "):]
		// drop the status code and name: "1 : FAIL : "
		for k := 0; k < 2; k++ {
			if j := strings.Index(s, " : "); j >= 0 && j < 20 {
				s = s[j+3:]
			}
		}
	}
	return s
}

func newSessionOptions(o Options, p Provider, device int) (*onnx.SessionOptions, error) {
	so, err := onnx.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ort: session options: %w", err)
	}
	fail := func(err error) (*onnx.SessionOptions, error) {
		return nil, errors.Join(err, so.Destroy())
	}
	if o.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(o.IntraOpThreads); err != nil {
			return fail(fmt.Errorf("ort: intra-op threads: %w", err))
		}
	}
	if o.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(o.InterOpThreads); err != nil {
			return fail(fmt.Errorf("ort: inter-op threads: %w", err))
		}
	}
	if err := so.SetGraphOptimizationLevel(onnx.GraphOptimizationLevelEnableAll); err != nil {
		return fail(fmt.Errorf("ort: graph optimisation level: %w", err))
	}
	if p == ProviderCUDA {
		cu, err := onnx.NewCUDAProviderOptions()
		if err != nil {
			return fail(err)
		}
		defer cu.Destroy()
		tf32 := "0"
		if o.CUDATF32 {
			tf32 = "1"
		}
		// HEURISTIC convolution search: EXHAUSTIVE (ONNX Runtime's default) benchmarks every
		// algorithm again for each new input shape, and a dynamic batcher makes a new batch
		// size, so a new shape, all the time.
		if err := cu.Update(map[string]string{"device_id": fmt.Sprint(device), "use_tf32": tf32,
			"cudnn_conv_algo_search": "HEURISTIC"}); err != nil {
			return fail(fmt.Errorf("ort: cuda provider options: %w", err))
		}
		if err := so.AppendExecutionProviderCUDA(cu); err != nil {
			return fail(fmt.Errorf("ort: append cuda execution provider: %w", err))
		}
	}
	return so, nil
}

// Provider is the execution provider this Runtime's sessions use: ProviderCUDA or ProviderCPU.
func (r *Runtime) Provider() Provider { return r.provider }

// Reason says why Provider was chosen.
func (r *Runtime) Reason() string { return r.reason }

// Providers lists the execution providers of this machine with whether each is usable and why.
func (r *Runtime) Providers() []ProviderStatus {
	return []ProviderStatus{
		{Name: ProviderCPU, Usable: true, Reason: "always available"},
		r.cuda,
	}
}

// LibraryPath is the ONNX Runtime library this process loaded.
func (r *Runtime) LibraryPath() string { return env.libPath }

// Version is the ONNX Runtime library's version, e.g. "1.29.0".
func (r *Runtime) Version() string { return onnx.GetVersion() }

// Close closes every session this Runtime created. It is idempotent. The process-wide
// environment stays initialised.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	sessions := r.sessions
	r.sessions = nil
	r.mu.Unlock()
	var errs []error
	for s := range sessions {
		errs = append(errs, s.close())
	}
	return errors.Join(errs...)
}

func (r *Runtime) track(s *Session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.sessions[s] = struct{}{}
	return nil
}

func (r *Runtime) untrack(s *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sessions, s)
}

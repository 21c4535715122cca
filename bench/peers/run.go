package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/llm4rec/llm4rec/bench/load"
	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/bench/synth"
	"github.com/llm4rec/llm4rec/eval"
)

// Implementation names, as they appear in the report.
const (
	ImplEngine  = "engine"     // text: engine/tokenizer + engine/ort; http: llm4rec serve
	ImplHugot   = "hugot"      // text only
	ImplPython  = "python-ort" // text only: onnxruntime + tokenizers (text_encoder.py)
	ImplFastAPI = "fastapi"    // http only: fastapi_service.py under uvicorn
)

// Targets of the engine against the FastAPI service at TargetCallers callers: throughput at
// least TargetThroughput times the service's, p99 at most TargetP99 times the service's.
const (
	TargetCallers    = 32
	TargetThroughput = 1.3
	TargetP99        = 0.5
)

// Config is one run of bench-peers, as its flags set it (runMain documents the defaults).
type Config struct {
	Bundle       string        `json:"bundle"`
	Engine       string        `json:"engine"` // the llm4rec binary
	Python       string        `json:"python"` // a python with bench/peers/requirements.txt
	Data         string        `json:"data"`   // request data for bench/load ("" = the catalog)
	Out          string        `json:"out"`
	Rounds       int           `json:"rounds"`
	Batches      []int         `json:"batches"`
	TextDuration time.Duration `json:"text_duration_ns"`
	Callers      []int         `json:"callers"`
	Kinds        []string      `json:"kinds"`
	HTTPDuration time.Duration `json:"http_duration_ns"`
	Threads      int           `json:"intra_op_threads"` // per ONNX Runtime session, every implementation; 0 = defaults
	Workers      int           `json:"fastapi_workers"`
	BLASThreads  int           `json:"blas_threads"` // numpy's BLAS threads in the Python peers; 0 = its default
	Parts        []string      `json:"parts"`        // text, http
	Plot         bool          `json:"plot"`
}

// Report is peers.json.
type Report struct {
	report.Run
	Config Config      `json:"config"`
	Text   *TextReport `json:"text,omitempty"`
	HTTP   *HTTPReport `json:"http,omitempty"`
}

// TextReport holds every round of the text-encoder part and the medians.
type TextReport struct {
	Rounds  [][]TextResult `json:"rounds"` // per round, in the order run
	Medians []TextMedian   `json:"medians"`
	Errors  []string       `json:"errors,omitempty"`
}

// TextMedian is one implementation at one batch size, medians over rounds. EngineOver is the
// median over rounds of the engine's samples/s divided by this implementation's.
type TextMedian struct {
	Impl        string  `json:"impl"`
	Batch       int     `json:"batch"`
	SamplesPerS float64 `json:"samples_per_s"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	EngineOver  float64 `json:"engine_over"`
	Rounds      int     `json:"rounds"`
}

// HTTPReport holds the parity check, every measured point and the medians.
type HTTPReport struct {
	Parity  []Parity     `json:"parity"`
	Points  []HTTPPoint  `json:"points"`
	Medians []HTTPMedian `json:"medians"`
	Targets []Target     `json:"targets"`
	Errors  []string     `json:"errors,omitempty"`
}

// Parity is one golden recommend case sent to one server (debias off): whether its top 10 is
// the golden one.
type Parity struct {
	Impl string   `json:"impl"`
	Case string   `json:"case"`
	OK   bool     `json:"ok"`
	Got  []string `json:"got,omitempty"`
	Err  string   `json:"error,omitempty"`
}

// HTTPPoint is one closed-loop bench/load run against one server.
type HTTPPoint struct {
	Round      int     `json:"round"`
	Order      int     `json:"order"` // 0 = ran first in its pair
	Impl       string  `json:"impl"`
	Kind       string  `json:"kind"`
	Callers    int     `json:"callers"`
	Requests   int     `json:"requests"`
	OK         int     `json:"ok"`
	Throughput float64 `json:"throughput"` // 2xx per second
	P50Ms      float64 `json:"p50_ms"`     // of 2xx answers
	P99Ms      float64 `json:"p99_ms"`
}

// HTTPMedian is one server at one kind and number of callers, medians over rounds; the ratios
// are medians over rounds of the engine's figure over this server's.
type HTTPMedian struct {
	Impl           string  `json:"impl"`
	Kind           string  `json:"kind"`
	Callers        int     `json:"callers"`
	Throughput     float64 `json:"throughput"`
	P50Ms          float64 `json:"p50_ms"`
	P99Ms          float64 `json:"p99_ms"`
	EngineOver     float64 `json:"engine_throughput_over"`
	EngineP99Over  float64 `json:"engine_p99_over"`
	FailedRequests int     `json:"failed_requests"`
	Requests       int     `json:"requests"`
}

// Target is the target at TargetCallers callers for one request kind.
type Target struct {
	Kind             string  `json:"kind"`
	Callers          int     `json:"callers"`
	ThroughputRatio  float64 `json:"throughput_ratio"`
	P99Ratio         float64 `json:"p99_ratio"`
	WantThroughput   float64 `json:"want_throughput_ratio_at_least"`
	WantP99          float64 `json:"want_p99_ratio_at_most"`
	Met              bool    `json:"met"`
	ThroughputTarget bool    `json:"throughput_met"`
	P99Target        bool    `json:"p99_met"`
}

func runMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench-peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Config
	var batches, callers, kinds, parts string
	fs.StringVar(&c.Bundle, "bundle", "models/movielens-100k/1", "model bundle folder")
	fs.StringVar(&c.Engine, "engine", "bin/llm4rec", "the llm4rec binary (its serve command is measured)")
	fs.StringVar(&c.Python, "python", "python3", "python with bench/peers/requirements.txt (bench/peers/venv.sh prints one)")
	fs.StringVar(&c.Data, "data", defaultData(), "request data for bench/load: a generic dataset or raw MovieLens-100K folder (empty: random histories from the catalog)")
	fs.StringVar(&c.Out, "out", "bench-out/peers", "folder for peers.json, peers.png, the queries and the servers' logs")
	fs.IntVar(&c.Rounds, "rounds", 3, "rounds; every round runs every implementation once per point, alternating")
	fs.StringVar(&batches, "batches", "1,8,32", "text-encoder batch sizes")
	fs.DurationVar(&c.TextDuration, "text-duration", 3*time.Second, "measured time per text-encoder point")
	fs.StringVar(&callers, "callers", "1,8,32", "concurrent callers of /v1/recommend (closed loop)")
	fs.StringVar(&kinds, "kinds", "history,query", "request kinds (bench/load): history, query")
	fs.DurationVar(&c.HTTPDuration, "http-duration", 8*time.Second, "measured time per HTTP point")
	fs.IntVar(&c.Threads, "threads", 1, "intra-op threads of every ONNX Runtime session of every implementation (0: ONNX Runtime's defaults)")
	fs.IntVar(&c.Workers, "workers", 1, "uvicorn worker processes of the FastAPI service")
	fs.IntVar(&c.BLASThreads, "blas-threads", 1, "threads of numpy's BLAS in the Python peers (0: its default, one per core for every call)")
	fs.StringVar(&parts, "parts", "text,http", "what to measure: text, http")
	fs.BoolVar(&c.Plot, "plot", true, "write peers.png")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if c.Batches, err = report.ParseInts(batches); err == nil {
		c.Callers, err = report.ParseInts(callers)
	}
	c.Kinds, c.Parts = report.SplitList(kinds), report.SplitList(parts)
	if err == nil && c.Rounds < 1 {
		err = errors.New("--rounds must be at least 1")
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench-peers: %v\n", err)
		return 2
	}
	rep, err := Run(context.Background(), c, stderr)
	if rep != nil {
		var sb strings.Builder
		rep.WriteTable(&sb)
		fmt.Fprint(stdout, sb.String())
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench-peers: %v\n", err)
		return 1
	}
	return 0
}

func defaultData() string {
	if d := os.Getenv("LLM4REC_DATA"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "ml-100k")); err == nil {
			return filepath.Join(d, "ml-100k")
		}
	}
	return ""
}

// Run measures what c asks for and writes peers.json (and peers.png) into c.Out. It returns
// the report together with an error when a part could not run or a peer failed the parity
// check; what was measured is in the report either way.
func Run(ctx context.Context, c Config, log io.Writer) (*Report, error) {
	var err error
	if c.Bundle, err = filepath.Abs(c.Bundle); err != nil {
		return nil, err
	}
	if err := report.BundleReady(c.Bundle); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return nil, err
	}
	if c.Out, err = filepath.Abs(c.Out); err != nil {
		return nil, err
	}
	rep := &Report{Run: report.NewRun("peers", time.Now()), Config: c}
	queries := filepath.Join(c.Out, "queries.txt")
	if err := os.WriteFile(queries, []byte(strings.Join(Queries(512, 1), "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	var errs []error
	if slices.Contains(c.Parts, "text") {
		rep.Text = runText(ctx, c, queries, log)
		for _, e := range rep.Text.Errors {
			errs = append(errs, errors.New(e))
		}
	}
	if slices.Contains(c.Parts, "http") {
		rep.HTTP = runHTTP(ctx, c, log)
		for _, e := range rep.HTTP.Errors {
			errs = append(errs, errors.New(e))
		}
	}
	if _, err := report.WriteJSON(c.Out, "peers.json", rep); err != nil {
		errs = append(errs, err)
	}
	if c.Plot {
		if err := rep.WritePlot(filepath.Join(c.Out, "peers.png")); err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

// Queries are n 30-word movie queries (about 32 tokens with [CLS] and [SEP], as in bench
// throughput), the same for a seed: every implementation encodes the same texts in the same
// order.
func Queries(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 30))
	out := make([]string, n)
	for i := range out {
		out[i] = synth.RandomText(rng, 30)
	}
	return out
}

// rotate returns impls starting at the i-th (modulo), so that the first to run changes from
// one round and point to the next.
func rotate(impls []string, i int) []string {
	i %= len(impls)
	return append(slices.Clone(impls[i:]), impls[:i]...)
}

// runText runs every text-encoder implementation once per round, each in its own process.
func runText(ctx context.Context, c Config, queries string, log io.Writer) *TextReport {
	tr := &TextReport{}
	self, err := os.Executable()
	if err != nil {
		tr.Errors = append(tr.Errors, err.Error())
		return tr
	}
	here := peersDir()
	common := func() []string {
		return []string{"--bundle", c.Bundle, "--queries", queries, "--batches", joinInts(c.Batches), "--threads", strconv.Itoa(c.Threads)}
	}
	argv := map[string][]string{
		ImplEngine: append([]string{self, "text", "--impl", "engine", "--duration", c.TextDuration.String()}, common()...),
		ImplHugot:  append([]string{self, "text", "--impl", "hugot", "--duration", c.TextDuration.String()}, common()...),
		ImplPython: append([]string{c.Python, filepath.Join(here, "text_encoder.py"), "--duration", fmt.Sprint(c.TextDuration.Seconds())}, common()...),
	}
	impls := []string{ImplEngine, ImplHugot, ImplPython}
	failed := map[string]bool{}
	for r := 0; r < c.Rounds; r++ {
		var round []TextResult
		for _, impl := range rotate(impls, r) {
			if failed[impl] {
				continue
			}
			report.Progressf(log, "text round %d/%d: %s", r+1, c.Rounds, impl)
			res, err := runTextProcess(ctx, argv[impl], blasThreads(c.BLASThreads))
			if err != nil {
				failed[impl] = true
				tr.Errors = append(tr.Errors, fmt.Sprintf("text encoder %s: %v", impl, err))
				continue
			}
			res.Impl = impl
			round = append(round, res)
		}
		tr.Rounds = append(tr.Rounds, round)
	}
	tr.Medians = textMedians(tr.Rounds, impls, c.Batches)
	return tr
}

// blasThreads is the environment that gives numpy's BLAS n threads when n > 0. With its default
// (one busy-waiting thread per core for every matrix product) and the service's thread pool
// calling it at once, the machine is oversubscribed and the Python service's throughput
// collapses under concurrent callers (measured: bench/README.md), so the peers run with 1.
func blasThreads(n int) []string {
	if n <= 0 {
		return nil
	}
	v := strconv.Itoa(n)
	return []string{"OMP_NUM_THREADS=" + v, "OPENBLAS_NUM_THREADS=" + v, "MKL_NUM_THREADS=" + v}
}

func runTextProcess(ctx context.Context, argv, env []string) (TextResult, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return TextResult{}, fmt.Errorf("%w: %s", err, report.OneLine(errb.String(), 400))
	}
	var res TextResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return TextResult{}, fmt.Errorf("read its JSON: %w", err)
	}
	return res, nil
}

func textMedians(rounds [][]TextResult, impls []string, batches []int) []TextMedian {
	find := func(round []TextResult, impl string, b int) (TextPoint, bool) {
		for _, r := range round {
			if r.Impl == impl {
				for _, p := range r.Points {
					if p.Batch == b {
						return p, true
					}
				}
			}
		}
		return TextPoint{}, false
	}
	var out []TextMedian
	for _, impl := range impls {
		for _, b := range batches {
			var sps, p50, p99, ratio []float64
			for _, round := range rounds {
				p, ok := find(round, impl, b)
				if !ok {
					continue
				}
				sps, p50, p99 = append(sps, p.SamplesPerS), append(p50, p.P50Ms), append(p99, p.P99Ms)
				if e, ok := find(round, ImplEngine, b); ok && p.SamplesPerS > 0 {
					ratio = append(ratio, e.SamplesPerS/p.SamplesPerS)
				}
			}
			if len(sps) == 0 {
				continue
			}
			out = append(out, TextMedian{Impl: impl, Batch: b, SamplesPerS: Median(sps), P50Ms: Median(p50),
				P99Ms: Median(p99), EngineOver: Median(ratio), Rounds: len(sps)})
		}
	}
	return out
}

// Median is the median of xs (the mean of the middle two for an even count); 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// peersDir is the folder of the Python peers: bench/peers of the working directory's tree, else
// the executable's folder's.
func peersDir() string {
	for _, d := range []string{"bench/peers", "."} {
		if _, err := os.Stat(filepath.Join(d, "pipeline.py")); err == nil {
			abs, _ := filepath.Abs(d)
			return abs
		}
	}
	return "bench/peers"
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// server is a child process serving HTTP; its output goes to a log file in the out folder.
type server struct {
	impl string
	url  string
	cmd  *exec.Cmd
	log  *os.File
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServer starts argv (with the environment env added) in its own process group and waits
// until url/healthz/ready answers 200.
func startServer(impl string, argv, env []string, url, logPath string) (*server, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", impl, err)
	}
	s := &server{impl: impl, url: url, cmd: cmd, log: f}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			f.Close()
			return nil, fmt.Errorf("%s exited before it was ready (%v); its log: %s", impl, err, logPath)
		case <-time.After(200 * time.Millisecond):
		}
		if r, err := http.Get(url + "/healthz/ready"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return s, nil
			}
		}
	}
	s.stop()
	return nil, fmt.Errorf("%s not ready after 120 s; its log: %s", impl, logPath)
}

// stop ends the server's process group: SIGTERM, then SIGKILL after 10 s.
func (s *server) stop() {
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if syscall.Kill(-pgid, 0) != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	s.log.Close()
}

// runHTTP starts both servers, checks them on the golden recommend cases, then measures every
// kind and number of callers, alternating the servers.
func runHTTP(ctx context.Context, c Config, log io.Writer) *HTTPReport {
	hr := &HTTPReport{}
	fail := func(err error) *HTTPReport {
		hr.Errors = append(hr.Errors, err.Error())
		return hr
	}
	data, err := load.RequestData(c.Data, c.Bundle, 0)
	if err != nil {
		return fail(err)
	}
	servers := map[string]*server{}
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, impl := range []string{ImplEngine, ImplFastAPI} {
		port, err := freePort()
		if err != nil {
			return fail(err)
		}
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		var argv, env []string
		switch impl {
		case ImplEngine:
			dataDir, err := os.MkdirTemp("", "bench-peers-data-")
			if err != nil {
				return fail(err)
			}
			defer os.RemoveAll(dataDir)
			argv = []string{c.Engine, "serve", "--bundle", c.Bundle, "--addr", fmt.Sprintf("127.0.0.1:%d", port),
				"--data-dir", dataDir, "--provider", "cpu", "--intra-threads", strconv.Itoa(c.Threads)}
			env = []string{"LLM4REC_API_KEY=", "LLM4REC_ADMIN_KEY="}
		case ImplFastAPI:
			argv = []string{c.Python, filepath.Join(peersDir(), "fastapi_service.py"), "--bundle", c.Bundle,
				"--port", strconv.Itoa(port), "--threads", strconv.Itoa(c.Threads), "--workers", strconv.Itoa(c.Workers)}
			env = blasThreads(c.BLASThreads)
		}
		report.Progressf(log, "starting %s at %s", impl, url)
		s, err := startServer(impl, argv, env, url, filepath.Join(c.Out, impl+".log"))
		if err != nil {
			return fail(err)
		}
		servers[impl] = s
	}
	impls := []string{ImplEngine, ImplFastAPI}
	for _, impl := range impls {
		for _, p := range checkParity(servers[impl].url, c.Bundle) {
			p.Impl = impl
			hr.Parity = append(hr.Parity, p)
			if !p.OK {
				hr.Errors = append(hr.Errors, fmt.Sprintf("%s: golden case %s: got %v %s", impl, p.Case, p.Got, p.Err))
			}
		}
	}
	// warm-up: every kind at the most callers, not recorded
	for _, impl := range impls {
		for _, kind := range c.Kinds {
			report.Progressf(log, "warm-up %s %s", impl, kind)
			if _, err := measureHTTP(ctx, servers[impl].url, data, kind, slices.Max(c.Callers), min(2*time.Second, c.HTTPDuration), 99); err != nil {
				return fail(fmt.Errorf("%s: %w", impl, err))
			}
		}
	}
	i := 0
	for r := 0; r < c.Rounds; r++ {
		for _, kind := range c.Kinds {
			for _, n := range c.Callers {
				for order, impl := range rotate(impls, r+i) {
					report.Progressf(log, "http round %d/%d: %s, %s, %d callers", r+1, c.Rounds, impl, kind, n)
					p, err := measureHTTP(ctx, servers[impl].url, data, kind, n, c.HTTPDuration, pointSeed(r, n))
					if err != nil {
						return fail(fmt.Errorf("%s: %w", impl, err))
					}
					p.Round, p.Order, p.Impl = r, order, impl
					hr.Points = append(hr.Points, p)
				}
				i++
			}
		}
	}
	hr.Medians, hr.Targets = httpMedians(hr.Points, impls, c.Kinds, c.Callers)
	return hr
}

// pointSeed is the request sequence of round r's points with n callers: the same for every
// implementation of a point, different from every other point's, so that no query of a point
// was sent at an earlier one (the engine's embedding cache would answer a repeated query without
// running the text encoder, which the FastAPI service has no cache for).
func pointSeed(r, n int) uint64 { return uint64(r+1)<<20 | uint64(n) }

// measureHTTP is one closed-loop bench/load run of one request kind; the seed fixes the request
// sequence, so both servers of a round get the same requests.
func measureHTTP(ctx context.Context, url string, data *eval.Dataset, kind string, callers int, d time.Duration, seed uint64) (HTTPPoint, error) {
	rep, err := load.Run(ctx, load.Config{URL: url, Concurrency: callers, Duration: d, Mix: load.Mix{kind: 1},
		Data: data, K: 10, Seed: seed})
	if err != nil {
		return HTTPPoint{}, err
	}
	if rep.OK == 0 {
		return HTTPPoint{}, fmt.Errorf("no request answered 2xx (%v)", rep.Status)
	}
	return HTTPPoint{Kind: kind, Callers: callers, Requests: rep.Requests, OK: rep.OK, Throughput: rep.Throughput,
		P50Ms: rep.LatencyOK.P50, P99Ms: rep.LatencyOK.P99}, nil
}

func httpMedians(points []HTTPPoint, impls, kinds []string, callers []int) ([]HTTPMedian, []Target) {
	type key struct {
		impl, kind string
		n, round   int
	}
	at := map[key]HTTPPoint{}
	rounds := 0
	for _, p := range points {
		at[key{p.Impl, p.Kind, p.Callers, p.Round}] = p
		rounds = max(rounds, p.Round+1)
	}
	var meds []HTTPMedian
	var targets []Target
	for _, kind := range kinds {
		for _, n := range callers {
			for _, impl := range impls {
				var thr, p50, p99, rt, rp []float64
				m := HTTPMedian{Impl: impl, Kind: kind, Callers: n}
				for r := 0; r < rounds; r++ {
					p, ok := at[key{impl, kind, n, r}]
					if !ok {
						continue
					}
					thr, p50, p99 = append(thr, p.Throughput), append(p50, p.P50Ms), append(p99, p.P99Ms)
					m.FailedRequests += p.Requests - p.OK
					m.Requests += p.Requests
					if e, ok := at[key{ImplEngine, kind, n, r}]; ok && p.Throughput > 0 && p.P99Ms > 0 {
						rt, rp = append(rt, e.Throughput/p.Throughput), append(rp, e.P99Ms/p.P99Ms)
					}
				}
				if len(thr) == 0 {
					continue
				}
				m.Throughput, m.P50Ms, m.P99Ms = Median(thr), Median(p50), Median(p99)
				m.EngineOver, m.EngineP99Over = Median(rt), Median(rp)
				meds = append(meds, m)
				if impl == ImplFastAPI && n == TargetCallers {
					t := Target{Kind: kind, Callers: n, ThroughputRatio: m.EngineOver, P99Ratio: m.EngineP99Over,
						WantThroughput: TargetThroughput, WantP99: TargetP99}
					t.ThroughputTarget, t.P99Target = t.ThroughputRatio >= TargetThroughput, t.P99Ratio <= TargetP99
					t.Met = t.ThroughputTarget && t.P99Target
					targets = append(targets, t)
				}
			}
		}
	}
	return meds, targets
}

// checkParity sends the bundle's golden recommend cases to a server with the popularity
// correction off and compares each top 10 with the golden one.
func checkParity(url, bundleDir string) []Parity {
	var g struct {
		Recommend []struct {
			UserID  string   `json:"user_id"`
			History []string `json:"history"`
			Query   string   `json:"query"`
			Top10   []string `json:"top10"`
		} `json:"recommend"`
	}
	raw, err := os.ReadFile(filepath.Join(bundleDir, "golden", "index.json"))
	if err == nil {
		err = json.Unmarshal(raw, &g)
	}
	if err != nil {
		return []Parity{{Case: "golden/index.json", Err: err.Error()}}
	}
	var out []Parity
	for _, c := range g.Recommend {
		name := "user " + c.UserID
		if c.Query != "" {
			name += " with a query"
		}
		p := Parity{Case: name}
		body, _ := json.Marshal(map[string]any{"history": c.History, "query": c.Query, "k": 10, "exclude_seen": true, "debias": false})
		resp, err := http.Post(url+"/v1/recommend", "application/json", bytes.NewReader(body))
		if err != nil {
			p.Err = err.Error()
			out = append(out, p)
			continue
		}
		var ans struct {
			Items []struct {
				ItemID string `json:"item_id"`
			} `json:"items"`
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			p.Err = fmt.Sprintf("status %d: %s", resp.StatusCode, report.OneLine(string(b), 200))
		} else if err := json.Unmarshal(b, &ans); err != nil {
			p.Err = err.Error()
		}
		for _, it := range ans.Items {
			p.Got = append(p.Got, it.ItemID)
		}
		p.OK = p.Err == "" && slices.Equal(p.Got, c.Top10)
		if p.OK {
			p.Got = nil
		}
		out = append(out, p)
	}
	return out
}

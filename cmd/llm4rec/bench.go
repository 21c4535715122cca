package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/llm4rec/llm4rec/bench/evaluate"
	"github.com/llm4rec/llm4rec/bench/load"
	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/bench/throughput"
	"github.com/llm4rec/llm4rec/engine/online"
	"github.com/llm4rec/llm4rec/engine/ort"
)

const benchUsage = `usage: llm4rec bench throughput|http|quality|online|scale [flags]

  throughput  samples/s and latency of each graph of a bundle and of the recommend pipeline,
              per provider and batch size: ONNX Runtime directly beside the engine's path
  http        load generator for a running server's /v1/recommend and /v1/feedback
  quality     offline full-ranking leave-one-out evaluation through the engine, IPS swept,
              with baselines, how typed and spoken requests steer the lists and how faithful
              and costly the explanations are, compared with the export's report
  online      a temporal stream after a bundle's training cutoff, scored before each event
              frozen, with live state, with the online learner and retrained; forgetting
  scale       load time, memory and Recommend latency as the catalog grows (given bundles, or
              synthetic ones of N items with random weights)

Run "llm4rec bench NAME -h" for flags.
`

func runBench(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, benchUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "throughput":
		return runBenchThroughput(args[1:], stdout, stderr)
	case "http":
		return runBenchHTTP(args[1:], stdout, stderr)
	case "quality":
		return runBenchQuality(args[1:], stdout, stderr)
	case "online":
		return runBenchOnline(args[1:], stdout, stderr)
	case "scale":
		return runBenchScale(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "llm4rec bench: unknown bench %q\n%s", args[0], benchUsage)
	return 2
}

// outputFlags are the output flags both benches share.
type outputFlags struct {
	out    string
	plot   bool
	asJSON bool
	quiet  bool
}

// logTo is where a bench job's progress lines go (stderr, nil with --quiet) and the logger it
// gets: warnings and errors on stderr.
func (o *outputFlags) logTo(stderr io.Writer) (io.Writer, *slog.Logger) {
	if o.quiet {
		return nil, warnLogger(stderr)
	}
	return stderr, warnLogger(stderr)
}

func (o *outputFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&o.out, "out", "", "folder to write the JSON report (and plots) into")
	fs.BoolVar(&o.plot, "plot", false, "also draw PNG plots into --out")
	fs.BoolVar(&o.asJSON, "json", false, "print the JSON report on stdout instead of the table")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines on stderr")
}

// parse reads a bench's flags: no positional arguments, consistent output flags.
func (o *outputFlags) parse(fs *flag.FlagSet, args []string, stderr io.Writer) bool {
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "llm4rec %s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return false
	}
	return o.check(stderr)
}

func (o *outputFlags) check(stderr io.Writer) bool {
	if o.plot && o.out == "" {
		fmt.Fprintln(stderr, "llm4rec bench: --plot writes into the --out folder: give --out DIR")
		return false
	}
	return true
}

// runReport runs a bench job until it ends or the process is interrupted (SIGINT, SIGTERM),
// then prints and writes its report.
func runReport(o *outputFlags, stdout, stderr io.Writer, run func(context.Context) (benchReport, error)) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "llm4rec: %v\n", err)
		return 1
	}
	return o.emit(rep, stdout, stderr)
}

type benchReport interface {
	WriteTable(io.Writer) error
	WriteJSON(dir string) (string, error)
	WritePlots(dir string) ([]string, error)
}

// emit prints a report and writes its files.
func (o *outputFlags) emit(rep benchReport, stdout, stderr io.Writer) int {
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "llm4rec: %v\n", err)
			return 1
		}
	} else if err := rep.WriteTable(stdout); err != nil {
		fmt.Fprintf(stderr, "llm4rec: %v\n", err)
		return 1
	}
	if o.out == "" {
		return 0
	}
	path, err := rep.WriteJSON(o.out)
	if err != nil {
		fmt.Fprintf(stderr, "llm4rec: %v\n", err)
		return 1
	}
	written := []string{path}
	if o.plot {
		paths, err := rep.WritePlots(o.out)
		if err != nil {
			fmt.Fprintf(stderr, "llm4rec: %v\n", err)
			return 1
		}
		written = append(written, paths...)
	}
	fmt.Fprintf(stderr, "wrote %s\n", strings.Join(written, ", "))
	return 0
}

func runBenchThroughput(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench throughput", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bundleDir := fs.String("bundle", "models/movielens-100k/1", "model bundle folder")
	graph := fs.String("onnx", "", "measure this one .onnx file (raw and batcher paths) instead of a bundle")
	shapes := map[string][]int64{}
	fs.Func("shape", "with --onnx: per-sample shape NAME=D1xD2 of an input with symbolic dimensions (repeatable; default 16 each)",
		func(s string) error { return throughput.ParseShape(s, shapes) })
	providers := fs.String("providers", "cpu,cuda", "execution providers to measure, in order (cuda, when unusable, is reported with the reason and skipped)")
	batches := fs.String("batches", "1,8,64,256", "batch sizes (callers at once for the batcher and engine paths)")
	duration := fs.Duration("duration", 2*time.Second, "measured time of each point")
	warmup := fs.Duration("warmup", 0, "untimed run before each point, at least one call per caller (default duration/5)")
	minCalls := fs.Int("min-calls", 3, "fewest timed raw calls of a point, however long they take")
	cases := fs.String("cases", "", "cases to measure (default all: text_encoder,image_encoder,audio_encoder,fusion,generator,pipeline)")
	paths := fs.String("paths", "raw,batcher,engine", "paths to measure: raw (Session.Run), batcher (engine/batch), engine (recommend.Engine)")
	maxWait := fs.Duration("batch-max-wait", 0, "the batcher's wait for a batch to fill (0: the engine's default, 500µs)")
	lib := fs.String("ort-lib", "", "path of libonnxruntime.so (default: $ORT_LIB, else the install of make deps)")
	intra := fs.Int("intra-threads", 0, "threads inside one operator (0: ONNX Runtime's default, one per core)")
	inter := fs.Int("inter-threads", 0, "threads across operators (0: ONNX Runtime's default)")
	device := fs.Int("cuda-device", 0, "CUDA device id")
	tf32 := fs.Bool("cuda-tf32", false, "let CUDA use TF32 for float32 matrix products (faster; outputs drift from the float32 goldens by about 1e-3)")
	seed := fs.Uint64("seed", 1, "seed of the synthetic inputs")
	var o outputFlags
	o.register(fs)
	if !o.parse(fs, args, stderr) {
		return 2
	}
	cfg := throughput.Config{Duration: *duration, Warmup: *warmup, MinCalls: *minCalls, Seed: *seed,
		Runtime: ort.Options{LibraryPath: *lib, IntraOpThreads: *intra, InterOpThreads: *inter, CUDADevice: *device, CUDATF32: *tf32}}
	cfg.Batch.MaxWait = *maxWait
	if *graph != "" {
		cfg.Graph, cfg.Shapes = *graph, shapes
	} else {
		cfg.Bundle = *bundleDir
		if err := report.BundleReady(cfg.Bundle); err != nil {
			fmt.Fprintf(stderr, "llm4rec: %v\n", err)
			return 1
		}
	}
	for _, p := range strings.Split(*providers, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pv, err := ort.ParseProvider(p)
		if err != nil || pv == ort.ProviderAuto {
			fmt.Fprintf(stderr, "llm4rec bench throughput: --providers: %q: want cpu or cuda\n", p)
			return 2
		}
		cfg.Providers = append(cfg.Providers, pv)
	}
	var err error
	if cfg.Batches, err = report.ParseInts(*batches); err != nil {
		fmt.Fprintf(stderr, "llm4rec bench throughput: --batches: %v\n", err)
		return 2
	}
	if cfg.Paths, err = throughput.ParsePaths(*paths); err != nil {
		fmt.Fprintf(stderr, "llm4rec bench throughput: --paths: %v\n", err)
		return 2
	}
	for _, c := range strings.Split(*cases, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cfg.Cases = append(cfg.Cases, c)
		}
	}
	cfg.Progress, cfg.Logger = o.logTo(stderr)
	rep, err := throughput.Run(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "llm4rec: %v\n", err)
		return 1
	}
	return o.emit(rep, stdout, stderr)
}

func runBenchHTTP(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench http", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "http://127.0.0.1:8080", "the server's base URL, or several comma-separated (replicas): requests go to each in turn")
	concurrency := fs.Int("concurrency", 8, "closed loop: callers at once; open loop (--rate): most requests in flight (0: unbounded)")
	duration := fs.Duration("duration", 10*time.Second, "how long requests are started")
	rate := fs.Float64("rate", 0, "open loop: requests started per second whatever the answers (0: closed loop at --concurrency)")
	mix := fs.String("mix", load.DefaultMix().String(), "weights of the recommend kinds: history only, with a query, with an image, with audio")
	feedbackShare := fs.Float64("feedback-share", 0, "fraction of all requests that are POST /v1/feedback (durable on the server), e.g. 0.2")
	feedbackBatch := fs.Int("feedback-batch", 1, "events per feedback request")
	dataDir := fs.String("data", "", "dataset to draw histories and queries from: generic format (items.jsonl, interactions.csv) or MovieLens-100K (u.data, u.item)")
	bundleDir := fs.String("bundle", "models/movielens-100k/1", "bundle whose items.jsonl is the catalog (restricts --data to it; used alone when --data is not given)")
	catalogSize := fs.Int("catalog-size", 1682, "without --data and a bundle catalog: synthesize item ids 1..N")
	key := fs.String("key", os.Getenv("LLM4REC_API_KEY"), "inference key sent as a bearer token (default $LLM4REC_API_KEY)")
	k := fs.Int("k", 10, "items per recommendation")
	maxHistory := fs.Int("max-history", 50, "most history items sent per request")
	sendUser := fs.Bool("user-id", false, "send the data's user id too (the server then adds the user's live history)")
	repeat := fs.Bool("repeat-content", false, "draw queries, images and audio from a small fixed pool, so that the server's embedding cache answers repeats")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on one request")
	seed := fs.Uint64("seed", 1, "seed of the request sequence")
	var o outputFlags
	o.register(fs)
	if !o.parse(fs, args, stderr) {
		return 2
	}
	m, err := load.ParseMix(*mix)
	if err != nil {
		fmt.Fprintf(stderr, "llm4rec bench http: --mix: %v\n", err)
		return 2
	}
	concurrencySet := false
	fs.Visit(func(f *flag.Flag) { concurrencySet = concurrencySet || f.Name == "concurrency" })
	cfg := load.Config{URL: *target, Rate: *rate, Concurrency: *concurrency, Duration: *duration, Mix: m,
		FeedbackShare: *feedbackShare, FeedbackBatch: *feedbackBatch, Key: *key, K: *k, MaxHistory: *maxHistory,
		SendUserID: *sendUser, RepeatContent: *repeat, Timeout: *timeout, Seed: *seed}
	if *rate > 0 && !concurrencySet {
		cfg.Concurrency = 0 // open loop: unbounded unless asked
	}
	cfg.Data, err = load.RequestData(*dataDir, *bundleDir, *catalogSize)
	if err != nil {
		fmt.Fprintf(stderr, "llm4rec: %v\n", err)
		return 1
	}
	if !o.quiet {
		cfg.Progress = stderr
		fmt.Fprintf(stderr, "bench http: %s for %s, data: %s\n", cfg.URL, cfg.Duration, cfg.Data.Source)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := load.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "llm4rec: %v\n", err)
		return 1
	}
	if rc := o.emit(rep, stdout, stderr); rc != 0 {
		return rc
	}
	if rep.OK == 0 {
		fmt.Fprintln(stderr, "llm4rec bench http: no request succeeded")
		return 1
	}
	return 0
}

// options turns the shared runtime flags into ort.Options (for benches that open their own runtime).
func (f *runtimeFlags) options() (ort.Options, error) {
	p, err := ort.ParseProvider(f.provider)
	if err != nil {
		return ort.Options{}, err
	}
	return ort.Options{LibraryPath: f.lib, Provider: p, IntraOpThreads: f.intra, InterOpThreads: f.inter, CUDADevice: f.device, CUDATF32: f.tf32}, nil
}

func runBenchQuality(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench quality", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bundleDir := fs.String("bundle", "models/movielens-100k/1", "model bundle folder")
	dataDir := fs.String("data", "../shared/data/ml-100k", "the bundle's training data: generic format (items.jsonl, interactions.csv, users.jsonl) or raw MovieLens-100K (u.data, u.item, u.user)")
	alphas := fs.String("alphas", "", "IPS strengths to evaluate the model at (default: the bundle's default alpha and 0,0.1,0.2,0.3,0.5,1; 0, the export's, is always included)")
	users := fs.Int("users", 0, "evaluate only the first N users with a held-out item (0: all)")
	workers := fs.Int("workers", 32, "recommendations in flight at once (the engine batches across them)")
	noGroupCal := fs.Bool("no-group-calibration", false, "skip the group calibration section (each user group at its own popularity-correction strength; ranks the validation items at 11 strengths when the bundle has no ips.group_alpha)")
	noSteering := fs.Bool("no-steering", false, "skip the steering evaluation (typed and spoken category requests) that runs when the bundle's manifest has a steering section")
	explainUsers := fs.Int("explain-users", evaluate.DefaultExplainUsers, "measure the explanations (faithfulness, typed requests, kinds, latency added) on the first N evaluated users with two history items or more (0 skips)")
	var rf runtimeFlags
	rf.register(fs)
	var o outputFlags
	o.register(fs)
	if !o.parse(fs, args, stderr) {
		return 2
	}
	if *explainUsers < 0 {
		fmt.Fprintf(stderr, "llm4rec bench quality: --explain-users %d: want 0 or more\n", *explainUsers)
		return 2
	}
	cfg := evaluate.QualityConfig{Bundle: *bundleDir, Data: *dataDir, Users: *users, Workers: *workers, NoSteering: *noSteering, NoGroupCalibration: *noGroupCal,
		ExplainUsers: *explainUsers}
	if *explainUsers == 0 {
		cfg.ExplainUsers = -1 // skipped
	}
	var err error
	if *alphas != "" {
		if cfg.Alphas, err = evaluate.ParseFloats(*alphas); err != nil {
			fmt.Fprintf(stderr, "llm4rec bench quality: --alphas: %v\n", err)
			return 2
		}
	}
	if cfg.Runtime, err = rf.options(); err != nil {
		fmt.Fprintf(stderr, "llm4rec bench quality: %v\n", err)
		return 2
	}
	cfg.Progress, cfg.Logger = o.logTo(stderr)
	return runReport(&o, stdout, stderr, func(ctx context.Context) (benchReport, error) { return evaluate.RunQuality(ctx, cfg) })
}

func runBenchOnline(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench online", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bundleDir := fs.String("bundle", "models/movielens-100k/1", "model bundle trained before a time cutoff (make bundle ... TRAIN_UNTIL=0.8)")
	dataDir := fs.String("data", "../shared/data/ml-100k", "the bundle's dataset (generic format or raw MovieLens-100K): the interactions after the cutoff are streamed")
	until := fs.String("until", "", "the cutoff for a bundle whose manifest records none: a fraction in (0, 1) of the interactions by time or a Unix timestamp")
	retrained := fs.String("retrained", "", "comma-separated bundles of the retrained upper bound, each DIR (cutoff from its manifest) or DIR@TIMESTAMP")
	events := fs.Int("events", 0, "stream only the first N events after the cutoff (0: all)")
	tune := fs.String("tune-until", "", "end of a tuning period after the cutoff (fraction or timestamp, as --until): --sweep chooses there, the figures are over the events after it")
	rate := fs.Float64("rate", 0, "the learner's bias step (0: the server's default, 0.02)")
	residualRate := fs.Float64("residual-rate", 0, "the learner's residual step (0: the default, 0.03; negative: biases only)")
	trendRate := fs.Float64("trend-rate", 0, "the learner's step on its weight of the items' live trend (0: the default; negative: no trend weight)")
	penalty := fs.Float64("penalty", 0, "the learner's L2 anchor to the shipped weights per step (0: the server's default, 0.01)")
	replay := fs.Int("replay", 0, "the learner's replay buffer size (0: the default, 4096; negative: none)")
	window := fs.Int("window", 1000, "events in the rolling NDCG@10 of the plot")
	sweep := fs.Bool("sweep", false, "also run a grid of learner settings beside the online mode (for choosing them on a tuning stream, never the reported one)")
	valUsers := fs.Int("val-users", 0, "forgetting on the first N pre-cutoff validation users (0: all)")
	workers := fs.Int("workers", 32, "graph runs in flight at once where order does not matter")
	var rf runtimeFlags
	rf.register(fs)
	var o outputFlags
	o.register(fs)
	if !o.parse(fs, args, stderr) {
		return 2
	}
	cfg := evaluate.OnlineConfig{Bundle: *bundleDir, Data: *dataDir, Until: *until, Events: *events, TuneUntil: *tune, Window: *window,
		ValUsers: *valUsers, Workers: *workers,
		Learner: online.Config{Rate: *rate, Penalty: *penalty, ResidualRate: *residualRate, Replay: *replay, TrendRate: *trendRate}}
	if *rate < 0 || *penalty < 0 || *rate**penalty >= 1 {
		fmt.Fprintf(stderr, "llm4rec bench online: --rate %g, --penalty %g: want both at least 0 and their product below 1\n", *rate, *penalty)
		return 2
	}
	if *sweep {
		cfg.Sweep = evaluate.DefaultLearnerSweep()
	}
	for _, r := range report.SplitList(*retrained) {
		c := evaluate.Checkpoint{Bundle: r}
		if dir, ts, ok := strings.Cut(r, "@"); ok {
			v, err := strconv.ParseInt(ts, 10, 64)
			if err != nil || v <= 0 {
				fmt.Fprintf(stderr, "llm4rec bench online: --retrained %q: want DIR or DIR@TIMESTAMP\n", r)
				return 2
			}
			c = evaluate.Checkpoint{Bundle: dir, From: v}
		}
		cfg.Retrained = append(cfg.Retrained, c)
	}
	var err error
	if cfg.Runtime, err = rf.options(); err != nil {
		fmt.Fprintf(stderr, "llm4rec bench online: %v\n", err)
		return 2
	}
	cfg.Progress, cfg.Logger = o.logTo(stderr)
	return runReport(&o, stdout, stderr, func(ctx context.Context) (benchReport, error) { return evaluate.RunOnline(ctx, cfg) })
}

// warnLogger logs warnings and errors only, so that a bench's own output stays readable.
func warnLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

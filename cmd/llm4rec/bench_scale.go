package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/bench/scale"
	"github.com/llm4rec/llm4rec/engine/retrieval"
)

func runBenchScale(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bundles := fs.String("bundles", "", "comma-separated bundle folders to measure as they are")
	items := fs.String("items", "", "comma-separated catalog sizes to measure on synthetic bundles (random weights), e.g. 1682,10000,100000")
	cacheDir := fs.String("cache", "", "folder of the synthetic bundles, made there when absent (default $LLM4REC_CACHE/synth, else ~/.cache/llm4rec/synth)")
	python := fs.String("python", "", "the export virtualenv's python, to synthesize bundles (default $LLM4REC_CACHE/venv-export/bin/python)")
	exportDir := fs.String("export-dir", "export", "the folder holding the llm4rec_export package")
	callers := fs.String("callers", "1,4,16", "concurrent callers of each point")
	kinds := fs.String("kinds", "history,query", "request kinds: history (history only), query (history and a typed query, distinct each time)")
	duration := fs.Duration("duration", 3*time.Second, "measured time of each point")
	warmup := fs.Duration("warmup", 0, "untimed run before each point (default duration/5)")
	historyLen := fs.Int("history", 50, "history items of each request")
	k := fs.Int("k", 10, "items per recommendation")
	index := fs.String("index", "auto", "retrieval index of the context items: "+retrieval.IndexKinds+"; other than exact, its recall@10 against exact is measured")
	seed := fs.Uint64("seed", 1, "seed of the histories and queries")
	var rf runtimeFlags
	rf.register(fs)
	var o outputFlags
	o.register(fs)
	if !o.parse(fs, args, stderr) {
		return 2
	}
	cfg := scale.Config{Bundles: report.SplitList(*bundles), CacheDir: *cacheDir, Python: *python, ExportDir: *exportDir,
		Duration: *duration, Warmup: *warmup, HistoryLen: *historyLen, K: *k, Seed: *seed}
	var err error
	if *items != "" {
		if cfg.Items, err = report.ParseInts(*items); err != nil {
			fmt.Fprintf(stderr, "llm4rec bench scale: --items: %v\n", err)
			return 2
		}
	}
	if len(cfg.Bundles) == 0 && len(cfg.Items) == 0 {
		fmt.Fprintln(stderr, "llm4rec bench scale: give --bundles or --items")
		return 2
	}
	if cfg.Callers, err = report.ParseInts(*callers); err != nil {
		fmt.Fprintf(stderr, "llm4rec bench scale: --callers: %v\n", err)
		return 2
	}
	if cfg.Kinds, err = scale.ParseKinds(*kinds); err != nil {
		fmt.Fprintf(stderr, "llm4rec bench scale: --kinds: %v\n", err)
		return 2
	}
	if cfg.Engine.Index, err = retrieval.ParseIndexKind(*index); err != nil {
		fmt.Fprintf(stderr, "llm4rec bench scale: --index: %v\n", err)
		return 2
	}
	if cfg.Runtime, err = rf.options(); err != nil {
		fmt.Fprintf(stderr, "llm4rec bench scale: %v\n", err)
		return 2
	}
	cfg.Progress, cfg.Logger = o.logTo(stderr)
	return runReport(&o, stdout, stderr, func(ctx context.Context) (benchReport, error) { return scale.Run(ctx, cfg) })
}

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/tokenizer"
)

// TextPoint is one batch size of one text-encoder implementation: texts encoded per second,
// tokenization included, and the latency of one batch.
type TextPoint struct {
	Batch       int     `json:"batch"`
	SamplesPerS float64 `json:"samples_per_s"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	Calls       int     `json:"calls"`
}

// TextResult is what one implementation's process prints: the same JSON as text_encoder.py.
type TextResult struct {
	Impl    string      `json:"impl"`
	Threads int         `json:"threads"`
	Points  []TextPoint `json:"points"`
}

// embedder encodes a batch of texts into embeddings (which the bench throws away).
type embedder struct {
	embed func(texts []string) error
	close func() error
}

// textMain runs `bench-peers text`: one implementation, in its own process (hugot and the
// engine each initialise ONNX Runtime's process-wide environment their own way).
func textMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("text", flag.ContinueOnError)
	fs.SetOutput(stderr)
	impl := fs.String("impl", "engine", "engine (engine/tokenizer and engine/ort) or hugot (feature extraction pipeline)")
	bundleDir := fs.String("bundle", "models/movielens-100k/1", "model bundle folder")
	queries := fs.String("queries", "", "file of texts, one a line")
	batches := fs.String("batches", "1,8,32", "batch sizes")
	duration := fs.Duration("duration", 3*time.Second, "measured time per batch size (a fifth more of warm-up)")
	threads := fs.Int("threads", 1, "intra-op threads of the session (0: ONNX Runtime's default)")
	ortLib := fs.String("ort-lib", "", "path of libonnxruntime.so (default: $ORT_LIB, else the install of make deps)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	bs, err := report.ParseInts(*batches)
	if err == nil && *queries == "" {
		err = errors.New("--queries is required")
	}
	var texts []string
	if err == nil {
		texts, err = readLines(*queries)
	}
	var e embedder
	if err == nil {
		lib := ort.Options{LibraryPath: *ortLib}.ResolveLibraryPath()
		dir, _ := filepath.Abs(*bundleDir)
		switch *impl {
		case "engine":
			e, err = openEngineText(dir, lib, *threads)
		case "hugot":
			e, err = openHugot(dir, lib, *threads)
		default:
			err = fmt.Errorf("unknown implementation %q: want engine or hugot", *impl)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench-peers text: %v\n", err)
		return 1
	}
	defer e.close()
	points, err := measureText(e.embed, texts, bs, *duration)
	if err != nil {
		fmt.Fprintf(stderr, "bench-peers text %s: %v\n", *impl, err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(TextResult{Impl: *impl, Threads: *threads, Points: points}); err != nil {
		return 1
	}
	return 0
}

// measureText times embed on successive batches of texts (cycling through them) at each batch
// size: a warm-up of a fifth of d, then d of calls, as text_encoder.py does.
func measureText(embed func([]string) error, texts []string, batches []int, d time.Duration) ([]TextPoint, error) {
	if len(texts) == 0 {
		return nil, errors.New("no texts")
	}
	at := 0
	next := func(b int) []string {
		out := make([]string, b)
		for i := range out {
			out[i] = texts[(at+i)%len(texts)]
		}
		at += b
		return out
	}
	var points []TextPoint
	for _, b := range batches {
		for end := time.Now().Add(d / 5); time.Now().Before(end); {
			if err := embed(next(b)); err != nil {
				return nil, err
			}
		}
		var lat []time.Duration
		start := time.Now()
		for end := start.Add(d); ; {
			batch := next(b)
			t := time.Now()
			if !t.Before(end) {
				break
			}
			if err := embed(batch); err != nil {
				return nil, err
			}
			lat = append(lat, time.Since(t))
		}
		secs := time.Since(start).Seconds()
		s := report.Summarize(lat)
		points = append(points, TextPoint{Batch: b, SamplesPerS: float64(b*len(lat)) / secs, P50Ms: s.P50, P99Ms: s.P99, Calls: len(lat)})
	}
	return points, nil
}

// openEngineText is the engine's own text path at batch B: engine/tokenizer's EncodeBatch
// (the bundle's max_length and pad id) and one engine/ort Session.Run of text_encoder.onnx,
// what the engine's dynamic batcher runs for B queued queries.
func openEngineText(dir, lib string, threads int) (embedder, error) {
	var m struct {
		Tokenizer struct {
			File      string `json:"file"`
			MaxLength int    `json:"max_length"`
			PadID     int64  `json:"pad_id"`
		} `json:"tokenizer"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err == nil {
		err = json.Unmarshal(raw, &m)
	}
	if err != nil {
		return embedder{}, fmt.Errorf("read manifest: %w", err)
	}
	rt, err := ort.Open(ort.Options{LibraryPath: lib, Provider: ort.ProviderCPU, IntraOpThreads: threads, InterOpThreads: min(threads, 1)})
	if err != nil {
		return embedder{}, err
	}
	sess, err := rt.NewSession(filepath.Join(dir, "text_encoder.onnx"), ort.SessionOptions{Name: "text_encoder"})
	if err != nil {
		return embedder{}, errors.Join(err, rt.Close())
	}
	tok, err := tokenizer.Load(filepath.Join(dir, m.Tokenizer.File), tokenizer.Config{MaxLength: m.Tokenizer.MaxLength, PadID: m.Tokenizer.PadID})
	if err != nil {
		return embedder{}, errors.Join(err, sess.Close(), rt.Close())
	}
	embed := func(texts []string) error {
		b, err := tok.EncodeBatch(texts)
		if err != nil {
			return err
		}
		shape := []int64{int64(b.Size), int64(b.Len)}
		_, err = sess.Run([]ort.Tensor{
			{Name: "input_ids", Shape: shape, Int64: b.InputIDs},
			{Name: "attention_mask", Shape: shape, Int64: b.AttentionMask},
		})
		return err
	}
	return embedder{embed: embed, close: func() error { return errors.Join(tok.Close(), sess.Close(), rt.Close()) }}, nil
}

func readLines(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out, nil
}

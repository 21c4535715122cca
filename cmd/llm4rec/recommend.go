package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/llm4rec/llm4rec/engine/recommend"
)

func runRecommend(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("recommend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf runtimeFlags
	rf.register(fs)
	bundleDir := fs.String("bundle", "models/movielens-100k/1", "model bundle folder")
	user := fs.String("user", "", "user id (its history comes from --history)")
	history := fs.String("history", "", "comma-separated item ids the user interacted with, oldest first")
	query := fs.String("query", "", "query text")
	imagePath := fs.String("image", "", "JPEG or PNG file")
	audioPath := fs.String("audio", "", "PCM WAV file")
	k := fs.Int("k", 10, "number of items")
	fs.IntVar(k, "n", 10, "same as -k")
	asJSON := fs.Bool("json", false, "print JSON")
	explainFlag := fs.Bool("explain", true, "explain every item")
	excludeSeen := fs.Bool("exclude-seen", true, "leave out items of the history")
	alpha := fs.Float64("alpha", -1, "IPS strength (negative: the bundle's default; 0: off)")
	mode := fs.String("mode", "topk", "topk (one generator step) or slate (k conditioned steps)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	req := recommend.Request{Query: *query, K: *k, ExcludeSeen: *excludeSeen, Explain: *explainFlag, Mode: recommend.Mode(*mode)}
	if *history != "" {
		for _, id := range strings.Split(*history, ",") {
			if id = strings.TrimSpace(id); id != "" {
				req.History = append(req.History, id)
			}
		}
	}
	if *user != "" && len(req.History) == 0 {
		fmt.Fprintf(stderr, "llm4rec: no history for user %q: give --history\n", *user)
		return 2
	}
	if *alpha >= 0 {
		req.Alpha = alpha
	}
	for _, f := range []struct {
		path string
		dst  *[]byte
	}{{*imagePath, &req.Image}, {*audioPath, &req.Audio}} {
		if f.path == "" {
			continue
		}
		data, err := os.ReadFile(f.path)
		if err != nil {
			fmt.Fprintf(stderr, "llm4rec: %v\n", err)
			return 1
		}
		*f.dst = data
	}
	logger := warnLogger(stderr)
	rt, err := rf.open(logger)
	if err != nil {
		fmt.Fprintf(stderr, "llm4rec: %v\n", err)
		return 1
	}
	defer rt.Close()
	eng, err := recommend.Open(*bundleDir, rt, recommend.Config{Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "llm4rec: %v\n", err)
		return 1
	}
	defer eng.Close()
	resp, err := eng.Recommend(context.Background(), req)
	if err != nil {
		fmt.Fprintf(stderr, "llm4rec: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"user_id": *user, "provider": rt.Provider(), "response": resp}); err != nil {
			return 1
		}
		return 0
	}
	fmt.Fprintf(stdout, "%d recommendations (%s, ips alpha %g, %s):\n", len(resp.Items), resp.Mode, resp.Alpha, rt.Provider())
	for i, it := range resp.Items {
		fmt.Fprintf(stdout, "%2d. %-50s id %-6s log p %7.3f  score %7.3f\n", i+1, it.Title, it.ItemID, it.LogProb, it.Score)
		for _, ex := range it.Explanations {
			fmt.Fprintf(stdout, "      %-10s %s\n", ex.Kind, ex.Text)
		}
	}
	return 0
}

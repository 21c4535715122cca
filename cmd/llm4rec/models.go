package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/llm4rec/llm4rec/engine/bundle"
)

func runModels(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "validate" {
		fmt.Fprintln(stderr, "usage: llm4rec models validate [flags] DIR")
		return 2
	}
	fs := flag.NewFlagSet("models validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf runtimeFlags
	rf.register(fs)
	rf.provider = "cpu"
	fs.Lookup("provider").DefValue = "cpu"
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: llm4rec models validate [flags] DIR")
		return 2
	}
	dir := fs.Arg(0)
	rt, err := rf.open(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintf(stderr, "llm4rec: %v\n", err)
		return 1
	}
	defer rt.Close()
	m, err := bundle.Validate(dir, rt)
	var verr *bundle.ValidationError
	if errors.As(err, &verr) {
		fmt.Fprintf(stderr, "bundle %s is not valid:\n", dir)
		for _, p := range verr.Problems {
			fmt.Fprintf(stderr, "  %s\n", p)
		}
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "llm4rec: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "bundle %s: ok (%s version %s, %d graphs, %d files, %d items, embedding dim %d)\n",
		dir, m.Name, m.Version, len(m.Graphs), len(m.Files), m.Items.Count, m.EmbeddingDim)
	return 0
}

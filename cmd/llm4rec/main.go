// Command llm4rec is the LLM4Rec engine's one binary: `llm4rec version`, `llm4rec models
// validate DIR`, and the commands later added beside them.
package main

import (
	"fmt"
	"io"
	"os"
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"version", "print the engine and ONNX Runtime versions and the usable execution providers", runVersion},
		{"models", "model bundle tools: `models validate DIR`", runModels},
		{"serve", "serve the HTTP API: serve --bundle DIR --addr HOST:PORT --data-dir DIR", runServe},
		{"recommend", "run the whole pipeline once, offline: recommend --bundle DIR --history ids [--query TEXT] [--image FILE] [--audio FILE]", runRecommend},
		{"bench", "benchmarks: `bench throughput` (graphs and pipeline per provider and batch), `bench http` (load on a server)", runBench},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: llm4rec COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `llm4rec COMMAND -h` for a command's flags.")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "llm4rec: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

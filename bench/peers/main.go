// Command bench-peers measures the engine against its peers on the same graphs and the same
// queries, in one run (`make bench-peers`):
//
//   - text encoder, per batch size: the engine's text path (engine/tokenizer and engine/ort),
//     hugot's feature-extraction pipeline, and Python onnxruntime with Hugging Face tokenizers
//     (text_encoder.py), each in its own process on the bundle's text_encoder.onnx;
//   - /v1/recommend over HTTP, per request kind (history only, history and a typed query) and
//     number of callers: the engine's server (`llm4rec serve`) against a Python FastAPI service
//     running the same pipeline on the same graphs (fastapi_service.py), both driven by
//     bench/load with the same request sequence.
//
// Implementations alternate within every round (the first one changes from round to round) and
// rounds repeat, so that a busy machine's drift falls on all of them alike; the report gives the
// median over rounds of each figure and the median of the per-round ratios. It writes
// peers.json and peers.png into --out. This is its own module so that the engine does not
// depend on hugot.
package main

import (
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "text" {
		os.Exit(textMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

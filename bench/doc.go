// Package bench measures the engine: `llm4rec bench throughput` runs each graph of a model
// bundle (and the whole recommend pipeline) on ONNX Runtime directly and through the
// engine's batched path, per execution provider and batch size; `llm4rec bench http` is a
// load generator for a running server's /v1/recommend and /v1/feedback (open loop at a rate,
// or closed loop at a concurrency) with a request mix drawn from a dataset.
//
// Every bench returns a report value that prints as a table for people (WriteTable), encodes
// as JSON for machines (WriteJSON) and, when asked, draws PNG plots (gonum.org/v1/plot).
// Percentiles are exact (nearest rank over every sample kept), not estimated.
package bench

// Package bench measures the engine, one job per group of files, each report's tables
// (WriteTable), JSON (WriteJSON) and PNG plots (WritePlots, gonum.org/v1/plot) in the
// *_report.go file beside its measurement:
//
//   - throughput (throughput.go, throughput_targets.go): `llm4rec bench throughput` runs each
//     graph of a model bundle (and the whole recommend pipeline) on ONNX Runtime directly and
//     through the engine's batched path, per execution provider and batch size;
//   - load generation (http.go, http_data.go, http_media.go): `llm4rec bench http` loads a
//     running server's /v1/recommend and /v1/feedback (open loop at a rate, or closed loop at
//     a concurrency) with a request mix drawn from a dataset;
//   - evaluation (quality.go, online.go, steering.go): `llm4rec bench quality` and `bench
//     online` evaluate a bundle through the engine with the export's protocol, which package
//     eval implements (loading, split, top-k, metrics, baselines).
//
// report.go, plot.go and stats.go hold what the reports share: tables, JSON files, plot
// panels, and exact percentiles (nearest rank over every sample kept, not estimated).
package bench

// Package eval is the offline evaluation protocol of the export
// (export/llm4rec_export/data.py and evaluate.py) in Go: one dataset model and loader (the
// generic format and raw MovieLens-100K), one id-ordering rule, the leave-one-out split by
// time, one top-k, the metrics (HR and NDCG@10, coverage, intra-list diversity, average
// recommendation popularity, NDCG by user group and its gaps), the dataset fingerprint and
// the baselines (most-popular, item-kNN); and, through the Go engine, the environment every
// such evaluation starts from (OpenEnv: the engine opened beside the data split over its
// catalog), the protocol's requests and lists (Request, Lists, EngineTops, on one worker pool,
// Parallel), paired bootstrap intervals (PairedBootstrap, PairedMeanDiff) and the steering
// evaluation's users and category precision.
//
// It sits beside engine/, not inside it: the engine serves requests and never evaluates (no
// package of engine/ imports this one), while this package is what bench/evaluate and the
// protocol tests share. The fixtures in testdata/protocol at the repository root pin it and
// the export to the same figures (TestProtocolFixtures here, export/tests/test_protocol.py
// there).
package eval

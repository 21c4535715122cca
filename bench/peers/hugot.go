package main

import (
	"path/filepath"

	"github.com/knights-analytics/hugot"
	"github.com/knights-analytics/hugot/options"
	"github.com/knights-analytics/hugot/pipelines"
)

// openHugot is hugot's feature-extraction pipeline (its ONNX Runtime backend, enabled by the
// ORT build tag; without it NewORTSession answers that the backend is disabled) on the bundle's
// text_encoder.onnx and tokenizer.json, reading the graph's pooled, normalised "embedding"
// output. hugot changes the process's working directory to the model folder when it loads a
// graph (so that external weights resolve), one more reason it runs in a process of its own.
func openHugot(dir, lib string, threads int) (embedder, error) {
	opts := []options.WithOption{options.WithOnnxLibraryPath(filepath.Dir(lib))}
	if threads > 0 {
		opts = append(opts, options.WithIntraOpNumThreads(threads), options.WithInterOpNumThreads(1))
	}
	s, err := hugot.NewORTSession(opts...)
	if err != nil {
		return embedder{}, err
	}
	p, err := hugot.NewPipeline(s, hugot.FeatureExtractionConfig{
		ModelPath:    dir,
		Name:         "text_encoder",
		OnnxFilename: "text_encoder.onnx",
		Options:      []hugot.FeatureExtractionOption{pipelines.WithOutputName("embedding")},
	})
	if err != nil {
		return embedder{}, err
	}
	embed := func(texts []string) error {
		_, err := p.RunPipeline(texts)
		return err
	}
	return embedder{embed: embed, close: s.Destroy}, nil
}

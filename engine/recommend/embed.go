package recommend

import (
	"context"
	"fmt"

	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/retrieval"
)

// EmbedQuery returns the text encoder's embedding of a query, from the cache when the same
// text was embedded before.
func (e *Engine) EmbedQuery(ctx context.Context, text string) ([]float32, error) {
	key := retrieval.KeyOf("text", []byte(text))
	if v, ok := e.cache.Get(key); ok {
		return v, nil
	}
	out, err := e.embedTexts(ctx, []string{text})
	if err != nil {
		return nil, err
	}
	e.cache.Add(key, out[0])
	return out[0], nil
}

// embedTexts runs the text encoder on texts as one request of len(texts) rows.
func (e *Engine) embedTexts(ctx context.Context, texts []string) ([][]float32, error) {
	in, n, err := e.textInputs(texts)
	if err != nil {
		return nil, err
	}
	out, err := e.text.Submit(ctx, in)
	if err != nil {
		return nil, err
	}
	return rows(out[0].Float32, n), nil
}

// textInputs tokenizes texts into the text encoder's inputs; n is the number of rows.
func (e *Engine) textInputs(texts []string) (in []ort.Tensor, n int, err error) {
	b, err := e.tok.EncodeBatch(texts)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	shape := []int64{int64(b.Size), int64(b.Len)}
	return []ort.Tensor{
		{Name: bundle.InInputIDs, Shape: shape, Int64: b.InputIDs},
		{Name: bundle.InAttentionMask, Shape: shape, Int64: b.AttentionMask},
	}, b.Size, nil
}

func rows(flat []float32, n int) [][]float32 {
	d := len(flat) / n
	out := make([][]float32, n)
	for i := range out {
		out[i] = flat[i*d : (i+1)*d : (i+1)*d]
	}
	return out
}

// EmbedImage decodes a JPEG or PNG and returns the image encoder's embedding (cached by
// content).
func (e *Engine) EmbedImage(ctx context.Context, data []byte) ([]float32, error) {
	key := retrieval.KeyOf("image", data)
	if v, ok := e.cache.Get(key); ok {
		return v, nil
	}
	need, err := e.imageCfg.DecodeBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%w: image: %w", ErrRequest, err)
	}
	var px []float32
	if err := e.decodeWithin(ctx, "image", need, func() (err error) {
		px, err = e.imageCfg.AppendPixels(nil, data)
		return err
	}); err != nil {
		return nil, err
	}
	s := int64(e.imageCfg.Size)
	out, err := e.image.Submit(ctx, []ort.Tensor{{Name: bundle.InPixels, Shape: []int64{1, 3, s, s}, Float32: px}})
	if err != nil {
		return nil, err
	}
	e.cache.Add(key, out[0].Float32)
	return out[0].Float32, nil
}

// EmbedAudio decodes a PCM WAV into log-mel frames and returns the audio encoder's embedding
// (cached by content).
func (e *Engine) EmbedAudio(ctx context.Context, data []byte) ([]float32, error) {
	key := retrieval.KeyOf("audio", data)
	if v, ok := e.cache.Get(key); ok {
		return v, nil
	}
	// the WAV's samples as float64 (8 bytes per 8-bit sample at worst) plus the frames
	var mel []float32
	var frames int
	if err := e.decodeWithin(ctx, "audio", min(8*int64(len(data))+1<<20, e.cfg.MaxDecodeMemory), func() (err error) {
		mel, frames, err = e.audioFx.LogMel(data)
		return err
	}); err != nil {
		return nil, err
	}
	nm := int64(e.manifest.Preprocessing.Audio.NMels)
	out, err := e.audio.Submit(ctx, []ort.Tensor{
		{Name: bundle.InLogMel, Shape: []int64{1, int64(frames), nm}, Float32: mel},
		{Name: bundle.InLengths, Shape: []int64{1}, Int64: []int64{int64(frames)}},
	})
	if err != nil {
		return nil, err
	}
	e.cache.Add(key, out[0].Float32)
	return out[0].Float32, nil
}

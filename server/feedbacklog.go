package server

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/llm4rec/llm4rec/server/feedback"
)

// FeedbackBBolt is Config.Feedback's default: the bbolt log in the data directory.
const FeedbackBBolt = "bbolt"

// jetStreamFeedback reports whether Feedback names NATS servers rather than the bbolt log.
func (c Config) jetStreamFeedback() bool {
	return c.Feedback != "" && c.Feedback != FeedbackBBolt
}

// feedbackConfig is the JetStream log's configuration from c; the zero value when the log is
// bbolt, which validates.
func (c Config) feedbackConfig() feedbackSettings {
	if !c.jetStreamFeedback() {
		return feedbackSettings{}
	}
	return feedbackSettings{on: true, cfg: feedback.JetStreamConfig{URL: c.Feedback, Stream: c.FeedbackStream,
		Replicas: c.FeedbackReplicas, LeaseTTL: c.LearnerLease, CredsFile: c.NATSCreds, TLSCA: c.NATSTLSCA, TLSCert: c.NATSTLSCert, TLSKey: c.NATSTLSKey}}
}

type feedbackSettings struct {
	on  bool
	cfg feedback.JetStreamConfig
}

// Validate checks the JetStream settings, and that Feedback is bbolt or a list of NATS URLs.
func (f feedbackSettings) Validate() error {
	if !f.on {
		return nil
	}
	for _, u := range strings.Split(f.cfg.URL, ",") {
		u = strings.TrimSpace(u)
		if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			return fmt.Errorf("feedback %q: want %q or NATS URLs (nats://HOST:4222 or tls://HOST:4222, comma-separated)", f.cfg.URL, FeedbackBBolt)
		}
	}
	return f.cfg.Validate()
}

// openFeedbackLog opens the log cfg names: the bbolt file in cfg.DataDir, or the JetStream
// stream on cfg.Feedback's NATS servers.
func openFeedbackLog(cfg Config, logger *slog.Logger) (feedback.Log, error) {
	f := cfg.feedbackConfig()
	if !f.on {
		return feedback.Open(cfg.DataDir, feedback.Config{})
	}
	f.cfg.Logger = logger
	j, err := feedback.OpenJetStream(f.cfg)
	if err != nil {
		return nil, err
	}
	logger.Info("feedback log: JetStream", "servers", cfg.Feedback, "stream", f.cfg.Stream, "replicas", f.cfg.Replicas,
		"last_seq", j.LastSeq())
	return j, nil
}

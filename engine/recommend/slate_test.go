package recommend

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// A slate request whose context is cancelled while it decodes stops before the next generator
// step and answers the context's error.
func TestSlateStopsWhenCancelled(t *testing.T) {
	shared := testEngine(t) // the runtime, and the bundle's presence
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var armed atomic.Bool
	var steps atomic.Int64
	e, err := Open(shared.dir, rt, Config{Observe: func(graph string, rows int, _ time.Duration, _ error) {
		if graph == "generator" && armed.Load() {
			steps.Add(1)
			cancel() // the first slate step has run: the caller goes away
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	hist := []string{e.items[2].ID, e.items[3].ID, e.items[4].ID}
	armed.Store(true)
	_, err = e.Recommend(ctx, Request{History: hist, K: 5, Mode: ModeSlate})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled slate: %v, want context.Canceled", err)
	}
	if n := steps.Load(); n != 1 {
		t.Fatalf("%d generator steps ran, want 1 (the step running when the request was cancelled)", n)
	}
}

package feedback

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Announcement is one value of an announced key: Value as published, Revision its place in
// the key's history (every replica sees the same). Initial is true for the value that was
// there when Watch started, false for those announced after.
type Announcement struct {
	Value    []byte
	Revision uint64
	Initial  bool
}

// announcements is the bucket STREAM_announce, made by the first Announce or Watch.
func (j *JetStream) announcements() (jetstream.KeyValue, error) {
	j.leaseMu.Lock()
	defer j.leaseMu.Unlock()
	if j.closed.Load() {
		return nil, ErrClosed
	}
	if j.announce == nil {
		ctx, cancel := context.WithTimeout(context.Background(), j.cfg.OpenTimeout)
		defer cancel()
		kv, err := j.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: j.cfg.Stream + "_announce",
			Description: "llm4rec announcements to every replica", Replicas: j.cfg.Replicas, Storage: jetstream.FileStorage, History: 1})
		if err != nil {
			return nil, fmt.Errorf("feedback: announcement bucket: %w", err)
		}
		j.announce = kv
	}
	return j.announce, nil
}

// Announce publishes value under key to every replica of the stream (Watch), durably: a
// replica started later finds the last value. It returns the value's revision.
func (j *JetStream) Announce(key string, value []byte) (uint64, error) {
	if !validKey.MatchString(key) {
		return 0, fmt.Errorf("feedback: announcement key %q: want letters, digits, '-', '_', '/', '='", key)
	}
	kv, err := j.announcements()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), j.cfg.AckTimeout)
	defer cancel()
	rev, err := kv.Put(ctx, key, value)
	if err != nil {
		return 0, fmt.Errorf("%w: announce %s: %w", ErrNotAcknowledged, key, err)
	}
	return rev, nil
}

// Watch calls fn with the last value announced under key, if any, then with each new one, in
// order, from its own goroutine, until the log is closed or stop is called.
func (j *JetStream) Watch(key string, fn func(Announcement)) (stop func(), err error) {
	kv, err := j.announcements()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := kv.Watch(ctx, key)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("feedback: watch %s: %w", key, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		initial := true
		for {
			select {
			case <-j.done:
				return
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					initial = false // the end of the values present at the start
					continue
				}
				if e.Operation() == jetstream.KeyValuePut {
					fn(Announcement{Value: e.Value(), Revision: e.Revision(), Initial: initial})
				}
			}
		}
	}()
	return func() {
		cancel()
		w.Stop()
		<-done
	}, nil
}

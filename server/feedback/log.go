package feedback

import (
	"context"
	"errors"
)

// Log is a durable, ordered feedback log: what the server writes feedback to and rebuilds
// its live state from. Two implement it: Store, the bbolt file of one machine (the default),
// and JetStream, a NATS JetStream stream shared by every replica of a cluster. Both number
// events 1, 2, 3, ... in one order that every reader sees, deduplicate by EventID and keep
// snapshots of derived state with the sequence number they reflect.
type Log interface {
	// Validate checks an event against the log's rules; Append does the same.
	Validate(e Event) error
	// Append returns once the events are durable (see each implementation for what that
	// means) and says which were new and which were retries of an earlier event_id.
	Append(ctx context.Context, events ...Event) (Result, error)
	// Replay calls fn for each event from fromSeq on, in order, up to LastSeq at the call.
	Replay(fromSeq uint64, fn func(seq uint64, e Event) error) error
	// LastSeq is the highest sequence number Replay can return now.
	LastSeq() uint64
	// Healthy is Err() == nil.
	Healthy() bool
	// Err says why the log cannot take writes now; nil when it can.
	Err() error
	// Stats are the log's counters.
	Stats() Stats
	// PutSnapshot and GetSnapshot keep derived state with the sequence number it reflects.
	PutSnapshot(name string, seq uint64, data []byte) error
	GetSnapshot(name string) (seq uint64, data []byte, ok bool, err error)
	// Close releases the log; later calls fail with ErrClosed.
	Close() error
}

var (
	_ Log = (*Store)(nil)
	_ Log = (*JetStream)(nil)
)

// ErrNotAcknowledged: the log did not confirm the events in time (a NATS server unreachable,
// a stream electing a leader). Unlike ErrUnavailable it is temporary: the same events may be
// sent again, and retries are deduplicated by event_id. The HTTP layer answers 503 with
// Retry-After.
var ErrNotAcknowledged = errors.New("feedback: the log did not acknowledge the events; retry")

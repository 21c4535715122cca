package feedback

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultLeaseTTL is how long a lease outlives its holder's last renewal (10s): the time a
// replica that died without releasing its lease keeps another from taking over.
const DefaultLeaseTTL = 10 * time.Second

// Lease is a leadership lease kept in a JetStream key-value bucket (STREAM_leases, whose
// values expire LeaseTTL after they were written): at most one process holds a lease of a
// name at a time. The holder renews it every TTL/3 from its own goroutine; it counts itself
// the holder only until TTL/2 after its last renewal was acknowledged, so it stops before
// the value can expire and another take it, even when it cannot reach NATS. Others try to
// take it at the same pace. Release (or closing the log) deletes it at once, so a successor
// need not wait out the TTL.
type Lease struct {
	kv   jetstream.KeyValue
	key  string
	id   string
	ttl  time.Duration
	log  func(msg string, args ...any)
	held atomic.Bool

	mu       sync.Mutex
	rev      uint64    // revision of our value while we hold it
	validTil time.Time // we hold it until then, unless renewed
	stop     chan struct{}
	done     chan struct{}
	changed  chan struct{} // a token when held changes
}

// Lease starts competing for the lease called name (letters, digits, '-', '_', '/', '=').
// Every replica that asks for the same name competes for the same lease. It stops with
// Release or Close.
func (j *JetStream) Lease(name string) (*Lease, error) {
	if !validKey.MatchString(name) {
		return nil, fmt.Errorf("feedback: lease name %q: want letters, digits, '-', '_', '/', '='", name)
	}
	j.leaseMu.Lock()
	defer j.leaseMu.Unlock()
	if j.closed.Load() {
		return nil, ErrClosed
	}
	if j.leases == nil {
		ctx, cancel := context.WithTimeout(context.Background(), j.cfg.OpenTimeout)
		defer cancel()
		kv, err := j.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: j.cfg.Stream + "_leases",
			Description: "llm4rec leases", Replicas: j.cfg.Replicas, Storage: jetstream.FileStorage, History: 1,
			TTL: j.cfg.LeaseTTL})
		if err != nil {
			return nil, fmt.Errorf("feedback: lease bucket: %w", err)
		}
		j.leases = kv
	}
	l := &Lease{kv: j.leases, key: name, id: rand.Text(), ttl: j.cfg.LeaseTTL, log: j.log.Warn,
		stop: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{}, 1)}
	j.held = append(j.held, l)
	go l.keep()
	return l, nil
}

// Held reports whether this process holds the lease now.
func (l *Lease) Held() bool {
	if !l.held.Load() {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Now().After(l.validTil) {
		l.set(false)
		return false
	}
	return true
}

// Changed yields a value when Held may have changed.
func (l *Lease) Changed() <-chan struct{} { return l.changed }

// ID names this holder (the lease's value while it holds it).
func (l *Lease) ID() string { return l.id }

func (l *Lease) set(v bool) {
	if l.held.Swap(v) != v {
		select {
		case l.changed <- struct{}{}:
		default:
		}
	}
}

// keep renews or tries to take the lease every TTL/3 until Release, and at once when its
// holder deletes it (Release).
func (l *Lease) keep() {
	defer close(l.done)
	tick := time.NewTicker(l.ttl / 3)
	defer tick.Stop()
	var released <-chan jetstream.KeyValueEntry
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if w, err := l.kv.Watch(ctx, l.key, jetstream.UpdatesOnly()); err == nil {
		defer w.Stop()
		released = w.Updates()
	}
	for {
		l.try()
		for waiting := true; waiting; {
			select {
			case <-l.stop:
				return
			case <-tick.C:
				waiting = false
			case e, ok := <-released:
				switch {
				case !ok:
					released = nil
				case e != nil && (e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge):
					waiting = false
				}
			}
		}
	}
}

// try renews the lease we hold, or takes it when nobody does.
func (l *Lease) try() {
	ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
	defer cancel()
	l.mu.Lock()
	holding, rev := l.held.Load(), l.rev
	l.mu.Unlock()
	start := time.Now()
	var (
		next uint64
		err  error
	)
	if holding {
		next, err = l.kv.Update(ctx, l.key, []byte(l.id), rev)
	} else {
		next, err = l.kv.Create(ctx, l.key, []byte(l.id))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if holding && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			l.log("feedback: lease lost", "lease", l.key, "err", err)
			l.set(false)
		}
		// not reachable: we keep what we have until validTil, which Held checks
		return
	}
	l.rev = next
	l.validTil = start.Add(l.ttl / 2) // measured from before the request: never later than the server's expiry
	l.set(true)
}

// Release gives the lease up: it stops competing and, when it holds the lease, deletes it so
// that another process takes it at once.
func (l *Lease) Release() {
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
		defer cancel()
		l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
	}
	l.set(false)
}

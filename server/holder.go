package server

import (
	"sync"
	"sync/atomic"
)

// loaded is one engine with the requests using it counted, so that a reload can swap in a
// new engine at once and close the old one only after its last request is done.
type loaded struct {
	eng    Recommender
	bundle string
	// learned is the sequence number of the last event the engine's learner took, or that
	// the snapshot it was restored from covers; each engine keeps its own.
	learned atomic.Uint64

	mu       sync.Mutex
	inFlight int
	retiring bool
	drained  chan struct{}
}

// holder is the current engine behind an atomic pointer.
type holder struct {
	cur atomic.Pointer[loaded]
}

// acquire returns the current engine with one more request counted; release must follow.
func (h *holder) acquire() *loaded {
	for {
		l := h.cur.Load()
		if l == nil {
			return nil
		}
		l.mu.Lock()
		if !l.retiring {
			l.inFlight++
			l.mu.Unlock()
			return l
		}
		l.mu.Unlock() // swapped out between Load and Lock: take the new one
	}
}

// retired reports whether l was swapped out.
func (l *loaded) retired() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.retiring
}

// hold counts one more user of an engine the caller already holds (acquire), for work that
// may outlive the caller's own release; release must follow.
func (l *loaded) hold() {
	l.mu.Lock()
	l.inFlight++
	l.mu.Unlock()
}

func (l *loaded) release() {
	l.mu.Lock()
	l.inFlight--
	if l.retiring && l.inFlight == 0 {
		close(l.drained)
	}
	l.mu.Unlock()
}

// swap installs next and returns the previous engine, retired: wait on its drained channel
// before closing it.
func (h *holder) swap(next *loaded) *loaded {
	prev := h.cur.Swap(next)
	if prev == nil {
		return nil
	}
	prev.mu.Lock()
	prev.retiring = true
	prev.drained = make(chan struct{})
	if prev.inFlight == 0 {
		close(prev.drained)
	}
	prev.mu.Unlock()
	return prev
}

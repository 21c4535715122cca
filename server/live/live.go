// Package live is the server's state derived from its feedback log: every user's history and
// event counts, and the item statistics (popularity, trending, co-occurrence) that engines
// read through popularity views. Both are keyed by user and item id, not by catalog row, so
// they outlive a model: a reload binds the new engine to the same State and finds everything
// the old one saw, whatever the new catalog's order.
//
// CatchUp is the one way events reach a State: it applies the log's events after the last
// one applied, in sequence order, each exactly once. Start-up calls it to rebuild the state
// from the whole log, a feedback request after its events are durable (so that they are
// visible before it is answered), a reload after its swap, and the server's follower loop
// now and then, so that an event whose request failed to apply it is applied anyway.
package live

import (
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm4rec/llm4rec/engine/popularity"
	"github.com/llm4rec/llm4rec/server/feedback"
)

// Log is what a State reads: the feedback store's Replay (see feedback.Store.Replay).
type Log interface {
	Replay(fromSeq uint64, fn func(seq uint64, e feedback.Event) error) error
}

var _ Log = (*feedback.Store)(nil)

// State is the live state. Its methods are safe for concurrent use.
type State struct {
	items *popularity.Live

	catchUp sync.Mutex // held by CatchUp: events apply one at a time, in sequence order
	applied atomic.Uint64

	mu    sync.RWMutex
	users map[string]*user
}

type user struct {
	items  []string    // item ids in event time order
	times  []time.Time // times[i] is when items[i] happened; sorted
	types  map[string]int
	first  time.Time
	last   time.Time
	events int
}

// New returns an empty State whose item statistics use cfg (see popularity.Live).
func New(cfg popularity.Config) *State {
	return &State{items: popularity.NewLive(cfg), users: map[string]*user{}}
}

// Items are the item statistics by id; bind an engine's catalog to them
// (recommend.Config.Live).
func (s *State) Items() *popularity.Live { return s.items }

// Applied is the sequence number of the last event applied (0: none).
func (s *State) Applied() uint64 { return s.applied.Load() }

// CatchUp applies every event of log after Applied, up to the log's last sequence number at
// the call, and returns how many it applied. Concurrent calls take turns; the second finds
// the first's events applied. Each event costs O(log h + CoWindow) for a user with h events
// (and a copy of the history's tail when the event is older than the user's latest one).
// On an error the events before it stay applied and the next call resumes after them.
func (s *State) CatchUp(log Log) (int, error) {
	s.catchUp.Lock()
	defer s.catchUp.Unlock()
	n := 0
	err := log.Replay(s.applied.Load()+1, func(seq uint64, e feedback.Event) error {
		s.apply(e)
		s.applied.Store(seq)
		n++
		return nil
	})
	return n, err
}

// apply records one event: the user's history (in event time order) and the item's
// statistics, with co-occurrence against the user's items before it in time.
func (s *State) apply(e feedback.Event) {
	window := s.items.Config().CoWindow
	s.mu.Lock()
	u := s.users[e.UserID]
	if u == nil {
		u = &user{types: map[string]int{}, first: e.Timestamp, last: e.Timestamp}
		s.users[e.UserID] = u
	}
	// after every item at or before e's time: arrival order among equal times
	i := len(u.times)
	if i > 0 && u.times[i-1].After(e.Timestamp) {
		i = sort.Search(len(u.times), func(j int) bool { return u.times[j].After(e.Timestamp) })
	}
	earlier := slices.Clone(u.items[max(0, i-window):i])
	u.items = slices.Insert(u.items, i, e.ItemID)
	u.times = slices.Insert(u.times, i, e.Timestamp)
	u.types[e.Type]++
	u.events++
	if e.Timestamp.Before(u.first) {
		u.first = e.Timestamp
	}
	if e.Timestamp.After(u.last) {
		u.last = e.Timestamp
	}
	s.mu.Unlock()
	s.items.Observe(e.ItemID, e.Timestamp, earlier)
}

// History returns a copy of the user's last limit item ids (all when limit <= 0), oldest
// first; nil for an unknown user.
func (s *State) History(id string, limit int) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.users[id]
	if u == nil {
		return nil
	}
	return slices.Clone(tail(u.items, len(u.items), limit))
}

// HistoryBefore returns a copy of the user's last limit item ids (all when limit <= 0) of
// events strictly before t, oldest first: what the user had seen when an event at t
// happened. It costs O(log h + limit).
func (s *State) HistoryBefore(id string, t time.Time, limit int) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.users[id]
	if u == nil {
		return nil
	}
	end := sort.Search(len(u.times), func(j int) bool { return !u.times[j].Before(t) })
	return slices.Clone(tail(u.items, end, limit))
}

// tail is items[:end]'s last limit entries (all when limit <= 0).
func tail(items []string, end, limit int) []string {
	if limit > 0 && end > limit {
		return items[end-limit : end]
	}
	return items[:end]
}

// UserView is GET /v1/users/{id}.
type UserView struct {
	UserID  string         `json:"user_id"`
	History []string       `json:"history"`
	Events  int            `json:"events"`
	ByType  map[string]int `json:"by_type"`
	First   time.Time      `json:"first_event"`
	Last    time.Time      `json:"last_event"`
}

// User describes a user with their last limit items; false for a user without feedback.
func (s *State) User(id string, limit int) (UserView, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.users[id]
	if u == nil {
		return UserView{}, false
	}
	types := make(map[string]int, len(u.types))
	for k, v := range u.types {
		types[k] = v
	}
	return UserView{UserID: id, History: slices.Clone(tail(u.items, len(u.items), limit)), Events: u.events,
		ByType: types, First: u.first, Last: u.last}, true
}

// Users is the number of users with feedback.
func (s *State) Users() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.users)
}

package server

import (
	"slices"
	"sync"
	"time"

	"github.com/llm4rec/llm4rec/server/feedback"
)

// users is the live per-user state rebuilt from the feedback log: history (item ids in event
// time order) and counts by event type. Item ids, not catalog rows, so that it outlives a
// model reload.
type users struct {
	mu sync.RWMutex
	m  map[string]*user
}

type user struct {
	items  []string
	times  []time.Time
	types  map[string]int
	first  time.Time
	last   time.Time
	events int
}

func newUsers() *users { return &users{m: map[string]*user{}} }

// add records an event and returns the user's history before it (oldest first).
func (u *users) add(e feedback.Event) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.m[e.UserID]
	if s == nil {
		s = &user{types: map[string]int{}, first: e.Timestamp}
		u.m[e.UserID] = s
	}
	before := slices.Clone(s.items)
	// keep time order when events arrive out of order
	i := len(s.items)
	for i > 0 && s.times[i-1].After(e.Timestamp) {
		i--
	}
	s.items = slices.Insert(s.items, i, e.ItemID)
	s.times = slices.Insert(s.times, i, e.Timestamp)
	s.types[e.Type]++
	s.events++
	if e.Timestamp.Before(s.first) {
		s.first = e.Timestamp
	}
	if e.Timestamp.After(s.last) {
		s.last = e.Timestamp
	}
	return before[:i:i]
}

// history returns a copy of the user's item ids, oldest first (nil for an unknown user).
func (u *users) history(id string) []string {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if s := u.m[id]; s != nil {
		return slices.Clone(s.items)
	}
	return nil
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

func (u *users) view(id string, limit int) (UserView, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	s := u.m[id]
	if s == nil {
		return UserView{}, false
	}
	h := s.items
	if len(h) > limit {
		h = h[len(h)-limit:]
	}
	types := make(map[string]int, len(s.types))
	for k, v := range s.types {
		types[k] = v
	}
	return UserView{UserID: id, History: slices.Clone(h), Events: s.events, ByType: types, First: s.first, Last: s.last}, true
}

func (u *users) count() int {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return len(u.m)
}

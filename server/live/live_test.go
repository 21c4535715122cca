package live

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/engine/popularity"
	"github.com/llm4rec/llm4rec/server/feedback"
)

// memLog is a Log in memory: event seq is events[seq-1]. fail, when set, is returned instead
// of applying the event of that sequence.
type memLog struct {
	mu     sync.Mutex
	events []feedback.Event
	fail   uint64
}

func (m *memLog) add(e ...feedback.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e...)
}

func (m *memLog) Replay(from uint64, fn func(uint64, feedback.Event) error) error {
	m.mu.Lock()
	end := uint64(len(m.events))
	m.mu.Unlock()
	for seq := max(from, 1); seq <= end; seq++ {
		if seq == m.fail {
			return errors.New("unreadable event")
		}
		m.mu.Lock()
		e := m.events[seq-1]
		m.mu.Unlock()
		if err := fn(seq, e); err != nil {
			return err
		}
	}
	return nil
}

var t0 = time.Unix(1_700_000_000, 0).UTC()

func ev(user, item string, sec int) feedback.Event {
	return feedback.Event{EventID: user + "/" + item + "/" + strconv.Itoa(sec), UserID: user, ItemID: item, Type: "click",
		Timestamp: t0.Add(time.Duration(sec) * time.Second)}
}

// CatchUp applies each event once, in sequence order, and resumes after an error where it
// stopped.
func TestCatchUpAppliesEachEventOnce(t *testing.T) {
	s := New(popularity.Config{})
	log := &memLog{}
	log.add(ev("u", "a", 1), ev("u", "b", 2), ev("v", "a", 3))
	if n, err := s.CatchUp(log); n != 3 || err != nil || s.Applied() != 3 {
		t.Fatalf("first catch-up: %d %v, applied %d", n, err, s.Applied())
	}
	if n, err := s.CatchUp(log); n != 0 || err != nil {
		t.Fatalf("nothing new: %d %v", n, err)
	}
	log.add(ev("u", "c", 4), ev("u", "d", 5))
	log.fail = 5
	if n, err := s.CatchUp(log); n != 1 || err == nil || s.Applied() != 4 {
		t.Fatalf("catch-up stopped by an error: %d %v, applied %d", n, err, s.Applied())
	}
	log.fail = 0
	if n, err := s.CatchUp(log); n != 1 || err != nil || s.Applied() != 5 {
		t.Fatalf("resumed: %d %v, applied %d", n, err, s.Applied())
	}
	if got := s.History("u", 0); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("history %v", got)
	}
	if s.Items().Count("a") != 2 || s.Items().CoOccurrence("b", "d") != 1 || s.Users() != 2 {
		t.Fatalf("a counted %v, b~d %v, %d users", s.Items().Count("a"), s.Items().CoOccurrence("b", "d"), s.Users())
	}
}

// Histories are in event time order whatever the arrival order; HistoryBefore is what the user
// had before a time, and co-occurrence pairs an event with the items before it in time.
func TestHistoryInTimeOrder(t *testing.T) {
	s := New(popularity.Config{CoWindow: 1})
	log := &memLog{}
	log.add(ev("u", "c", 30), ev("u", "a", 10), ev("u", "d", 40), ev("u", "b", 20), ev("u", "b2", 20))
	if _, err := s.CatchUp(log); err != nil {
		t.Fatal(err)
	}
	if got := s.History("u", 0); !slices.Equal(got, []string{"a", "b", "b2", "c", "d"}) {
		t.Fatalf("history %v", got)
	}
	if got := s.History("u", 2); !slices.Equal(got, []string{"c", "d"}) {
		t.Fatalf("last 2 %v", got)
	}
	for _, c := range []struct {
		sec   int
		limit int
		want  []string
	}{{10, 0, nil}, {20, 0, []string{"a"}}, {21, 0, []string{"a", "b", "b2"}}, {41, 2, []string{"c", "d"}}, {30, 1, []string{"b2"}}} {
		if got := s.HistoryBefore("u", t0.Add(time.Duration(c.sec)*time.Second), c.limit); !slices.Equal(got, c.want) {
			t.Errorf("before %ds, limit %d: %v, want %v", c.sec, c.limit, got, c.want)
		}
	}
	// b arrived after c but happened before it: it co-occurs with a (the item before it in
	// time within the window of 1), not with c
	if s.Items().CoOccurrence("b", "a") != 1 || s.Items().CoOccurrence("b", "c") != 0 {
		t.Fatalf("b~a %v, b~c %v", s.Items().CoOccurrence("b", "a"), s.Items().CoOccurrence("b", "c"))
	}
	v, ok := s.User("u", 3)
	if !ok || v.Events != 5 || !slices.Equal(v.History, []string{"b2", "c", "d"}) || !v.First.Equal(t0.Add(10*time.Second)) || !v.Last.Equal(t0.Add(40*time.Second)) {
		t.Fatalf("view %+v", v)
	}
}

// Concurrent catch-ups (feedback requests, the follower, a reload) apply every event once.
func TestConcurrentCatchUps(t *testing.T) {
	s := New(popularity.Config{})
	log := &memLog{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				log.add(ev("u"+strconv.Itoa(w), strconv.Itoa(i%7), i))
				if _, err := s.CatchUp(log); err != nil {
					t.Error(err)
				}
				_ = s.History("u0", 5)
				_ = s.HistoryBefore("u1", t0.Add(50*time.Second), 0)
			}
		})
	}
	wg.Wait()
	var total float64
	for i := range 7 {
		total += s.Items().Count(strconv.Itoa(i))
	}
	if s.Applied() != 400 || total != 400 {
		t.Fatalf("applied %d, counted %v, want 400", s.Applied(), total)
	}
	for w := range 4 {
		if v, _ := s.User("u"+strconv.Itoa(w), 0); v.Events != 100 {
			t.Fatalf("user %d has %d events", w, v.Events)
		}
	}
}

// BenchmarkCatchUp replays one user's history of h events, in time order, from an in-memory
// log: the cost per event must not grow with h (ns/event about equal across the sizes).
// "late" delivers every 100th event an hour late, so it lands inside the history.
func BenchmarkCatchUp(b *testing.B) {
	for _, late := range []bool{false, true} {
		for _, h := range []int{1_000, 10_000, 100_000} {
			name := fmt.Sprintf("in-order/h=%d", h)
			if late {
				name = fmt.Sprintf("late/h=%d", h)
			}
			b.Run(name, func(b *testing.B) {
				log := &memLog{}
				for i := range h {
					sec := i
					if late && i%100 == 99 {
						sec -= 3600
					}
					log.add(ev("u", strconv.Itoa(i%500), sec))
				}
				b.ResetTimer()
				for range b.N {
					s := New(popularity.Config{})
					if _, err := s.CatchUp(log); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*h), "ns/event")
			})
		}
	}
}

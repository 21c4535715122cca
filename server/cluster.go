package server

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm4rec/llm4rec/server/feedback"
)

// A server on a feedback log that replicas share (feedback.JetStream) differs from one on its
// own log in three ways, all here:
//   - events other replicas appended reach this one's live state at once (startCluster's
//     applier), through the one catch-up path (live.State.CatchUp);
//   - exactly one replica learns: the holder of the "learner" lease; it alone saves learner
//     snapshots to the log's shared store (learnerTurn, learnerLeads);
//   - the others load those snapshots as they come (every snapshotFollowEvery), and a replica
//     that takes the lease over resumes from the last one;
//   - a reload (POST /admin/models/reload) that succeeded on one replica is announced to all
//     (announceRollout); each loads, validates, warms and swaps the bundle the way a reload
//     does (applyRollout), and one that fails keeps serving the old bundle and says so in
//     its readiness answer and llm4rec_rollout_failed. A replica started later loads the
//     last bundle announced.

// learnerLeaseName is the lease every replica of a stream competes for to learn.
const learnerLeaseName = "learner"

// snapshotFollowEvery is how often a replica that does not learn looks for a newer snapshot
// of the learner that does (a key-value read).
const snapshotFollowEvery = 500 * time.Millisecond

// sharedLog is a feedback log that other processes append to: it says when events arrived
// from anywhere, holds leases and carries announcements to every replica.
type sharedLog interface {
	Updates() <-chan struct{}
	Lease(name string) (*feedback.Lease, error)
	Announce(key string, value []byte) (uint64, error)
	Watch(key string, fn func(feedback.Announcement)) (stop func(), err error)
}

// rolloutKey is the announcement that names the bundle every replica serves.
const rolloutKey = "bundle"

// rollout is the announcement's value.
type rollout struct {
	Bundle string `json:"bundle"` // the bundle folder, the same path on every replica
	From   string `json:"from"`   // the announcing replica's clusterState.id
}

var _ sharedLog = (*feedback.JetStream)(nil)

// clusterState is the learner's side of a shared log. leading and lastLoad belong to the
// follower goroutine (learnerTurn).
type clusterState struct {
	id       string          // names this replica in its announcements
	lease    *feedback.Lease // nil when it could not be had: this replica then never learns
	leading  bool
	lastLoad time.Time

	rolloutErr atomic.Pointer[string] // why the last bundle announced failed here; nil: it did not
}

// startCluster, on a shared log, starts the applier and competes for the learner lease; on
// a log of one process (bbolt) it does nothing: feedback requests apply their own events and
// the one process learns. The applier stops with the follower (followStop, followWG).
func (s *Server) startCluster() {
	shared, ok := s.store.(sharedLog)
	if !ok {
		return
	}
	s.cluster = &clusterState{id: rand.Text()}
	if *s.cfg.OnlineLearning {
		lease, err := shared.Lease(learnerLeaseName)
		if err != nil {
			s.log.Error("online learner: no lease, so this replica will not learn (it loads the snapshots of the one that does)", "err", err)
		}
		s.cluster.lease = lease
	}
	s.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "llm4rec_online_learner_leader",
		Help: "1 while this replica holds the learner lease and learns from the shared feedback log, else 0."},
		func() float64 {
			if s.learnerLeads() {
				return 1
			}
			return 0
		}))
	s.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "llm4rec_rollout_failed",
		Help: "1 while the last bundle announced to the replicas failed to load here (the previous one keeps serving), else 0."},
		func() float64 {
			if s.cluster.rolloutErr.Load() != nil {
				return 1
			}
			return 0
		}))
	s.watchRollouts(shared)
	ch := shared.Updates()
	s.followWG.Add(1)
	go func() {
		defer s.followWG.Done()
		for {
			select {
			case <-s.followStop:
				return
			case <-ch:
			}
			if _, err := s.live.CatchUp(s.store); err != nil && !errors.Is(err, feedback.ErrClosed) {
				s.log.Warn("live state: applying events from the shared feedback log", "err", err)
			}
			s.wakeFollower()
		}
	}()
}

// learnerLeads reports whether this replica's learner may learn and save snapshots: always on
// a log of its own, only while it holds the lease on a shared one.
func (s *Server) learnerLeads() bool {
	if s.cluster == nil {
		return true
	}
	return s.cluster.lease != nil && s.cluster.lease.Held()
}

// learnerTurn runs on the follower before each learning pass and says whether to learn. A
// replica that has just taken the lease first loads the last snapshot (it resumes from there,
// not from its own older state); one without the lease loads newer snapshots as they come.
func (s *Server) learnerTurn(l *loaded) bool {
	c := s.cluster
	if c == nil {
		return true
	}
	if s.learnerLeads() {
		if !c.leading {
			c.leading = true
			s.followSnapshot(l)
			s.log.Info("online learner: this replica holds the lease and learns", "from_seq", l.learned.Load()+1)
		}
		return true
	}
	if c.leading {
		c.leading = false
		s.log.Info("online learner: lease lost; this replica follows the learner's snapshots")
	}
	if time.Since(c.lastLoad) >= snapshotFollowEvery {
		c.lastLoad = time.Now()
		s.followSnapshot(l)
	}
	return false
}

// followSnapshot loads l's learner from the shared snapshot when it is newer than what l
// holds and not ahead of this replica's live state.
func (s *Server) followSnapshot(l *loaded) {
	lr := l.eng.Learner()
	if lr == nil {
		return
	}
	seq, data, ok, err := s.store.GetSnapshot(snapshotName(l.eng))
	switch {
	case err != nil:
		s.log.Warn("online learner: reading the shared snapshot", "err", err)
	case !ok || seq <= l.learned.Load() || seq > s.live.Applied():
		// nothing newer, or ahead of what this replica has applied: next time
	default:
		if err := lr.UnmarshalBinary(data); err != nil {
			s.log.Error("online learner: shared snapshot unusable", "snapshot", snapshotName(l.eng), "seq", seq, "err", err)
			s.m.snapshotErrors.Inc()
			msg := fmt.Sprintf("shared snapshot %s at seq %d unusable: %v", snapshotName(l.eng), seq, err)
			s.snapErr.Store(&msg)
			return
		}
		l.learned.Store(seq)
	}
}

// watchRollouts applies the bundle announcements, one at a time, on a goroutine of the
// follower's group: Shutdown waits for a reload in progress and none starts after.
func (s *Server) watchRollouts(shared sharedLog) {
	queue := make(chan feedback.Announcement, 16)
	stop, err := shared.Watch(rolloutKey, func(a feedback.Announcement) {
		select {
		case queue <- a:
		case <-s.followStop:
		}
	})
	if err != nil {
		s.log.Error("bundle rollouts: cannot watch the announcements; this replica will not follow reloads made elsewhere", "err", err)
		return
	}
	s.followWG.Add(1)
	go func() {
		defer s.followWG.Done()
		defer stop()
		for {
			select {
			case <-s.followStop:
				return
			case a := <-queue:
				s.applyRollout(a)
			}
		}
	}()
}

// applyRollout reloads the bundle an announcement names, unless this replica announced it
// or, for the announcement found at start-up, already serves it.
func (s *Server) applyRollout(a feedback.Announcement) {
	var r rollout
	if err := json.Unmarshal(a.Value, &r); err != nil || r.Bundle == "" {
		msg := fmt.Sprintf("bundle announcement at revision %d unreadable (%q), ignored", a.Revision, a.Value)
		s.log.Error("bundle rollout: " + msg)
		s.cluster.rolloutErr.Store(&msg)
		return
	}
	if r.From == s.cluster.id {
		return
	}
	if a.Initial {
		if l := s.engines.acquire(); l != nil {
			same := l.bundle == r.Bundle
			l.release()
			if same {
				return
			}
		}
	}
	start := time.Now()
	if _, err := s.Reload(r.Bundle); err != nil {
		msg := fmt.Sprintf("bundle %s (announced at revision %d) failed here, the previous model keeps serving: %v", r.Bundle, a.Revision, err)
		s.log.Error("bundle rollout: " + msg)
		s.cluster.rolloutErr.Store(&msg)
		return
	}
	s.cluster.rolloutErr.Store(nil)
	s.log.Info("bundle rollout: loaded", "bundle", r.Bundle, "revision", a.Revision, "took", time.Since(start))
}

// announceRollout tells every replica to load the bundle this one serves now, after a reload
// here succeeded. It returns what to add to the reload's answer: nothing on a log of one
// process.
func (s *Server) announceRollout() string {
	shared, ok := s.store.(sharedLog)
	if !ok || s.cluster == nil {
		return ""
	}
	l := s.engines.acquire()
	if l == nil {
		return ""
	}
	dir := l.bundle
	l.release()
	val, _ := json.Marshal(rollout{Bundle: dir, From: s.cluster.id})
	rev, err := shared.Announce(rolloutKey, val)
	if err != nil {
		s.log.Error("bundle rollout: not announced", "bundle", dir, "err", err)
		return "loaded here but not announced to the other replicas (retry the reload): " + err.Error()
	}
	s.cluster.rolloutErr.Store(nil)
	return fmt.Sprintf("announced to every replica (revision %d)", rev)
}

// rolloutProblem is why the last bundle announced failed here; empty when it did not.
func (s *Server) rolloutProblem() string {
	if s.cluster == nil {
		return ""
	}
	if p := s.cluster.rolloutErr.Load(); p != nil {
		return *p
	}
	return ""
}

package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/server/internal/natstest"
)

// The cluster tests run replicas of the fake bundle on one JetStream stream: in this process
// (start with Config.Feedback set), or as child processes of the test binary (replicaChild)
// where a replica must die by SIGKILL.

// replicaChildEnv names the NATS servers of a replica child process; set, TestMain runs
// replicaChild instead of the tests.
const replicaChildEnv = "LLM4REC_TEST_REPLICA_NATS"

// replicaChild serves the fake bundle on a loopback port with the JetStream log named by the
// environment, prints "LISTEN URL" and serves until it is killed.
func replicaChild() int {
	replicas, _ := strconv.Atoi(os.Getenv("LLM4REC_TEST_REPLICA_REPLICAS"))
	cfg := Config{Bundle: fakeBundle, DataDir: os.Getenv("LLM4REC_TEST_REPLICA_DIR"), Feedback: os.Getenv(replicaChildEnv),
		FeedbackStream: os.Getenv("LLM4REC_TEST_REPLICA_STREAM"), FeedbackReplicas: replicas}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := NewWithBackend(cfg, &fakeBackend{}, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 1
	}
	fmt.Printf("LISTEN http://%s\n", ln.Addr())
	if err := s.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 1
	}
	return 0
}

// shared3 is one 3-node NATS cluster for the fault tests of this process: its servers take
// seconds to elect their meta leader, once. Each test uses its own stream (nextStream).
var shared3 struct {
	once sync.Once
	c    *natstest.Cluster
	dir  string
	err  error
}

// natsCluster returns the shared cluster, started by the first test that asks.
func natsCluster(t testing.TB) *natstest.Cluster {
	t.Helper()
	shared3.once.Do(func() {
		shared3.dir, shared3.err = os.MkdirTemp("", "llm4rec-nats-")
		if shared3.err == nil {
			shared3.c, shared3.err = natstest.StartCluster(shared3.dir, 3)
		}
	})
	if shared3.err != nil {
		t.Fatalf("nats cluster: %v", shared3.err)
	}
	for _, n := range shared3.c.Nodes {
		n.Start(t) // one a failed test left stopped
	}
	return shared3.c
}

// stopClusters stops the shared cluster and removes its storage (TestMain, after the tests).
func stopClusters() {
	if shared3.c != nil {
		shared3.c.Stop()
	}
	if shared3.dir != "" {
		os.RemoveAll(shared3.dir)
	}
}

var streams atomic.Int64

// nextStream is a stream name no other test of this process uses.
func nextStream() string { return fmt.Sprint("FB", streams.Add(1)) }

// childReplica is a replica in its own process.
type childReplica struct {
	cmd    *exec.Cmd
	url    string
	stderr *bytes.Buffer
}

// startChild starts a replica process on the stream and waits until it listens (it is ready
// then: New returns after catching up).
func startChild(t *testing.T, natsURLs, stream string, replicas int) *childReplica {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), replicaChildEnv+"="+natsURLs, "LLM4REC_TEST_REPLICA_STREAM="+stream,
		fmt.Sprint("LLM4REC_TEST_REPLICA_REPLICAS=", replicas), "LLM4REC_TEST_REPLICA_DIR="+t.TempDir())
	c := &childReplica{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = c.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.kill)
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
				line <- u
			}
		}
		close(line)
	}()
	select {
	case u, ok := <-line:
		if !ok {
			cmd.Wait()
			t.Fatalf("replica process exited before listening: %s", c.stderr)
		}
		c.url = u
	case <-time.After(30 * time.Second):
		t.Fatalf("replica process not listening within 30s: %s", c.stderr)
	}
	return c
}

// kill sends SIGKILL: nothing of the process's shutdown runs.
func (c *childReplica) kill() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Signal(syscall.SIGKILL)
		c.cmd.Wait()
	}
}

// startReplica serves the fake bundle in this process on the JetStream stream.
func startReplica(t *testing.T, natsURLs, stream string, replicas int, edit func(*Config)) *testServer {
	t.Helper()
	return start(t, func(c *Config) {
		c.Feedback, c.FeedbackStream, c.FeedbackReplicas = natsURLs, stream, replicas
		if edit != nil {
			edit(c)
		}
	})
}

// clusterClient keeps at most 128 connections to each replica (requests beyond wait for one):
// a burst would otherwise open connections past the server's MaxConnsPerIP (256), which it
// refuses, and pay a dial for each.
var clusterClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128}, Timeout: 10 * time.Second}

// postEvents sends events to the replica at url; status 0 means no answer.
func postEvents(url string, events ...map[string]any) (int, map[string]any) {
	raw, _ := json.Marshal(map[string]any{"events": events})
	resp, err := clusterClient.Post(url+"/v1/feedback", "application/json", bytes.NewReader(raw))
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &body)
	return resp.StatusCode, body
}

// userView is GET /v1/users/{id} at url; ok is false for a 404.
func userView(t *testing.T, url, id string) (v struct {
	History []string `json:"history"`
	Events  int      `json:"events"`
}, ok bool) {
	t.Helper()
	resp, err := clusterClient.Get(url + "/v1/users/" + id)
	if err != nil {
		t.Fatalf("GET %s/v1/users/%s: %v", url, id, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case 404:
		return v, false
	case 200:
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("user %s: %v", id, err)
		}
		return v, true
	}
	t.Fatalf("GET %s/v1/users/%s: %d %s", url, id, resp.StatusCode, b)
	return v, false
}

// event is the i-th event of a test's load: 20 users, each event at its own millisecond.
func event(prefix string, i int, base int64) map[string]any {
	return map[string]any{"event_id": fmt.Sprint(prefix, i), "user_id": fmt.Sprint(prefix, "u", i%20),
		"item_id": strconv.Itoa(1 + (i*7)%fakeItems), "type": "click", "timestamp": float64(base+int64(i)) / 1000}
}

// converged waits (at most 20s) until every replica's view of each user holds every
// acknowledged event of that user, no more events than were sent, and the same history as
// every other replica.
func converged(t *testing.T, urls []string, acked, sent map[string]map[string]any) {
	t.Helper()
	want := map[string][]string{} // user -> items acknowledged
	most := map[string]int{}      // user -> events sent
	for _, e := range acked {
		u := e["user_id"].(string)
		want[u] = append(want[u], e["item_id"].(string))
	}
	for _, e := range sent {
		most[e["user_id"].(string)]++
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		problem := ""
		for u, items := range want {
			var first []string
			for k, url := range urls {
				v, ok := userView(t, url, u)
				if !ok {
					problem = fmt.Sprintf("replica %d has no user %s", k, u)
					break
				}
				if !containsAll(v.History, items) || v.Events > most[u] || v.Events != len(v.History) {
					problem = fmt.Sprintf("replica %d, user %s: %d events %v; acknowledged %v, %d sent", k, u, v.Events, v.History, items, most[u])
					break
				}
				if k == 0 {
					first = v.History
				} else if !slices.Equal(first, v.History) {
					problem = fmt.Sprintf("user %s: replica 0 has %v, replica %d %v", u, first, k, v.History)
					break
				}
			}
			if problem != "" {
				break
			}
		}
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged within 20s: %s", problem)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// containsAll reports whether have holds every item of want, counted with multiplicity.
func containsAll(have, want []string) bool {
	n := map[string]int{}
	for _, h := range have {
		n[h]++
	}
	for _, w := range want {
		if n[w]--; n[w] < 0 {
			return false
		}
	}
	return true
}

// Feedback sent to any replica is visible in every replica's GET /v1/users/{id} and item
// statistics: histories, counts and co-occurrence are the same everywhere.
func TestClusterFeedbackVisibleEverywhere(t *testing.T) {
	n := natstest.Run(t)
	var rs []*testServer
	var urls []string
	for range 3 {
		r := startReplica(t, n.URL(), "FB", 1, nil)
		rs = append(rs, r)
		urls = append(urls, r.url)
	}
	base := time.Now().Add(-time.Hour).UnixMilli()
	acked := map[string]map[string]any{}
	for i := range 60 {
		e := event("v", i, base)
		if st, body := postEvents(urls[i%3], e); st != 200 || body["accepted"] != 1.0 {
			t.Fatalf("event %d at replica %d: %d %v", i, i%3, st, body)
		}
		acked[e["event_id"].(string)] = e
		// the replica that answered shows it at once
		if v, ok := userView(t, urls[i%3], e["user_id"].(string)); !ok || v.History[len(v.History)-1] != e["item_id"] {
			t.Fatalf("event %d not visible at the replica that acknowledged it: %v", i, v.History)
		}
	}
	converged(t, urls, acked, acked)
	for _, id := range []string{"1", "8", "15", "50"} {
		var counts []float64
		for _, r := range rs {
			counts = append(counts, r.countOf(id))
		}
		if counts[0] == 0 || counts[0] != counts[1] || counts[1] != counts[2] {
			t.Fatalf("item %s counts differ or are zero: %v", id, counts)
		}
	}
	var co []float64
	for _, r := range rs {
		l := r.serving()
		a, _ := l.eng.Row("48") // user vu1 had 8, then 48, then 88
		b, _ := l.eng.Row("8")
		co = append(co, l.eng.Stats().CoOccurrence(a, b))
	}
	if co[0] == 0 || co[0] != co[1] || co[1] != co[2] {
		t.Fatalf("co-occurrence of items 48 and 8 differs or is zero: %v", co)
	}
}

// The same event id sent to two replicas (at once, and again later) is counted once
// everywhere; the same id with other content is refused with 409.
func TestClusterSameEventTwoReplicasCountedOnce(t *testing.T) {
	n := natstest.Run(t)
	a := startReplica(t, n.URL(), "FB", 1, nil)
	b := startReplica(t, n.URL(), "FB", 1, nil)
	base := time.Now().Add(-time.Hour).UnixMilli()
	e := event("d", 1, base)
	var wg sync.WaitGroup
	var accepted, dups atomic.Int64
	for _, url := range []string{a.url, b.url, a.url, b.url} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, body := postEvents(url, e)
			if st != 200 {
				t.Errorf("status %d %v", st, body)
				return
			}
			accepted.Add(int64(body["accepted"].(float64)))
			dups.Add(int64(body["duplicates"].(float64)))
		}()
	}
	wg.Wait()
	if accepted.Load() != 1 || dups.Load() != 3 {
		t.Fatalf("accepted %d, duplicates %d; want 1 and 3", accepted.Load(), dups.Load())
	}
	if st, body := postEvents(b.url, e); st != 200 || body["duplicates"] != 1.0 {
		t.Fatalf("later retry: %d %v", st, body)
	}
	other := event("d", 1, base)
	other["item_id"] = "99"
	if st, body := postEvents(a.url, other); st != 409 {
		t.Fatalf("other content under the same id: %d %v", st, body)
	}
	one := map[string]map[string]any{"d1": e}
	converged(t, []string{a.url, b.url}, one, one)
	for _, r := range []*testServer{a, b} {
		if v, _ := userView(t, r.url, e["user_id"].(string)); v.Events != 1 {
			t.Fatalf("user has %d events, want 1", v.Events)
		}
		if c := r.countOf(e["item_id"].(string)); c != 1 {
			t.Fatalf("item counted %v times, want 1", c)
		}
	}
}

// A replica started after events were acknowledged catches up from the stream before it is
// ready, and its learner starts from the snapshot another replica published, not from zero.
func TestClusterLateReplicaCatchesUp(t *testing.T) {
	n := natstest.Run(t)
	a := startReplica(t, n.URL(), "FB", 1, func(c *Config) { c.SnapshotEvery = 10 })
	base := time.Now().Add(-time.Hour).UnixMilli()
	acked := map[string]map[string]any{}
	var batch []map[string]any
	for i := range 40 {
		e := event("l", i, base)
		acked[e["event_id"].(string)] = e
		batch = append(batch, e)
	}
	if st, body := postEvents(a.url, batch...); st != 200 || body["accepted"] != 40.0 {
		t.Fatalf("feedback: %d %v", st, body)
	}
	// wait until a's learner took every event and published its snapshot
	deadline := time.Now().Add(20 * time.Second)
	name := snapshotName(a.serving().eng)
	for {
		seq, _, ok, err := a.store.GetSnapshot(name)
		if err != nil {
			t.Fatal(err)
		}
		if ok && seq == 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot at seq 40 within 20s (have %d, %v)", seq, ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
	late := startReplica(t, n.URL(), "FB", 1, nil)
	if late.store.LastSeq() != 40 || late.live.Applied() != 40 {
		t.Fatalf("late replica ready at seq %d, applied %d; want 40", late.store.LastSeq(), late.live.Applied())
	}
	if l := late.serving(); l.learned.Load() != 40 {
		t.Fatalf("late replica's learner starts at seq %d, want the snapshot's 40", l.learned.Load())
	}
	converged(t, []string{a.url, late.url}, acked, acked)
}

// loadGen sends events (each to replicas in turn, retried with the same event id at the
// next replica until acknowledged or the deadline) from a few workers, and records what was
// acknowledged and when.
type loadGen struct {
	prefix string
	base   int64
	urls   func() []string

	mu       sync.Mutex
	acked    map[string]map[string]any
	sent     map[string]map[string]any
	ackedAt  map[string]time.Time
	attempts atomic.Int64
	failures atomic.Int64
	progress chan int // the number acknowledged, after each acknowledgement (dropped when full)
}

func newLoad(prefix string, urls func() []string) *loadGen {
	return &loadGen{prefix: prefix, base: time.Now().Add(-time.Hour).UnixMilli(), urls: urls,
		acked: map[string]map[string]any{}, sent: map[string]map[string]any{}, ackedAt: map[string]time.Time{},
		progress: make(chan int, 1024)}
}

// run sends total events from workers workers, pacing each worker by pace, and returns when
// all were acknowledged or deadline passed.
func (g *loadGen) run(total, workers int, pace time.Duration, deadline time.Time) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += workers {
				e := event(g.prefix, i, g.base)
				id := e["event_id"].(string)
				g.mu.Lock()
				g.sent[id] = e
				g.mu.Unlock()
				for try := 0; time.Now().Before(deadline); try++ {
					urls := g.urls()
					g.attempts.Add(1)
					if st, _ := postEvents(urls[(i+try)%len(urls)], e); st == 200 {
						g.mu.Lock()
						g.acked[id] = e
						g.ackedAt[id] = time.Now()
						n := len(g.acked)
						g.mu.Unlock()
						select {
						case g.progress <- n:
						default:
						}
						break
					}
					g.failures.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
				time.Sleep(pace)
			}
		}()
	}
	wg.Wait()
}

// waitAcked blocks until at least n events are acknowledged.
func (g *loadGen) waitAcked(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case k := <-g.progress:
			if k >= n {
				return
			}
		case <-timeout:
			t.Fatalf("fewer than %d events acknowledged within 30s", n)
		}
	}
}

// A replica killed with SIGKILL under load and started again: the load goes on through the
// others (requests to the dead one are retried elsewhere with the same event id), and every
// acknowledged event is present in every replica, the restarted one included, each once.
func TestClusterReplicaKilledUnderLoad(t *testing.T) {
	c := natsCluster(t)
	stream := nextStream()
	a := startReplica(t, c.URLs(), stream, 3, nil)
	b := startReplica(t, c.URLs(), stream, 3, nil)
	child := startChild(t, c.URLs(), stream, 3)
	var mu sync.Mutex
	urls := []string{a.url, b.url, child.url}
	g := newLoad("k", func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(urls)
	})
	const total = 600
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.run(total, 8, 5*time.Millisecond, time.Now().Add(60*time.Second))
	}()
	g.waitAcked(t, total/3)
	child.kill()
	g.waitAcked(t, total/2)
	restarted := startChild(t, c.URLs(), stream, 3)
	mu.Lock()
	urls[2] = restarted.url
	mu.Unlock()
	<-done
	if len(g.acked) != total {
		t.Fatalf("%d of %d events acknowledged within the deadline (%d failed attempts)", len(g.acked), total, g.failures.Load())
	}
	converged(t, []string{a.url, b.url, restarted.url}, g.acked, g.sent)
	for u := range 20 {
		id := fmt.Sprint("ku", u)
		if v, _ := userView(t, a.url, id); v.Events != total/20 {
			t.Fatalf("user %s has %d events, want %d: an event was lost or counted twice", id, v.Events, total/20)
		}
	}
	t.Logf("%d events, %d attempts, %d failed while the replica was down", total, g.attempts.Load(), g.failures.Load())
}

// One NATS node of three stopped under load (the stream's leader: the worst one to lose):
// acknowledged writes continue after it, nothing acknowledged is lost, every replica
// converges; the node started again rejoins.
func TestClusterNATSNodeStoppedUnderLoad(t *testing.T) {
	c := natsCluster(t)
	stream := nextStream()
	var rs []*testServer
	var urls []string
	for range 3 {
		r := startReplica(t, c.URLs(), stream, 3, nil)
		rs = append(rs, r)
		urls = append(urls, r.url)
	}
	g := newLoad("n", func() []string { return urls })
	const total = 600
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.run(total, 8, 5*time.Millisecond, time.Now().Add(60*time.Second))
	}()
	g.waitAcked(t, total/3)
	leader := c.StreamLeader(stream)
	if leader == nil {
		t.Fatal("the stream has no leader")
	}
	stopped := time.Now()
	leader.Stop()
	g.waitAcked(t, total/2)
	<-done
	after := survivedNodeLoss(t, g, urls, total, stopped, "nu")
	leader.Start(t)
	if st, body := postEvents(urls[1], event("n", total, g.base)); st != 200 {
		t.Fatalf("after the node came back: %d %v", st, body)
	}
	t.Logf("stopped %s; %d acknowledged after; %d failed attempts", leader.Name(), after, g.failures.Load())
}

// The JetStream settings are checked with the rest of the configuration.
// survivedNodeLoss checks a finished load run that lost a NATS node at `lost`: every event
// acknowledged, at least a third of them after the loss, every replica converged on what was
// acknowledged, and each of the run's 20 users (userPrefix and a number) holding its share
// exactly once. It returns how many were acknowledged after the loss.
func survivedNodeLoss(t *testing.T, g *loadGen, urls []string, total int, lost time.Time, userPrefix string) int {
	t.Helper()
	if len(g.acked) != total {
		t.Fatalf("%d of %d events acknowledged within the deadline (%d failed attempts)", len(g.acked), total, g.failures.Load())
	}
	after := 0
	for _, at := range g.ackedAt {
		if at.After(lost) {
			after++
		}
	}
	if after < total/3 {
		t.Fatalf("only %d events acknowledged after the node was lost", after)
	}
	converged(t, urls, g.acked, g.sent)
	for u := range 20 {
		id := fmt.Sprint(userPrefix, u)
		if v, _ := userView(t, urls[0], id); v.Events != total/20 {
			t.Fatalf("user %s has %d events, want %d: an event was lost or counted twice", id, v.Events, total/20)
		}
	}
	return after
}

func TestClusterConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Feedback: "http://x:4222"}, "want \"bbolt\" or NATS URLs"},
		{Config{Feedback: "nats://x:4222", FeedbackStream: "a.b"}, "stream name"},
		{Config{Feedback: "nats://x:4222", FeedbackReplicas: 9}, "replicas 9"},
		{Config{Feedback: "nats://x:4222", NATSTLSKey: "k.pem"}, "certificate and key"},
	} {
		err := tc.cfg.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if got := (Config{}).WithDefaults().Feedback; got != FeedbackBBolt {
		t.Fatalf("default feedback log %q", got)
	}
	_, err := NewWithBackend(Config{Bundle: fakeBundle, DataDir: t.TempDir(), Feedback: "nats://127.0.0.1:1"}, &fakeBackend{}, nil)
	if err == nil || !strings.Contains(err.Error(), "connect to NATS") {
		t.Fatalf("no NATS server: %v", err)
	}
}

// learnerSteps is how many learner steps the replica took: the fake engine's fusion runs,
// which only the learner makes when no recommendation is asked.
func learnerSteps(t *testing.T, ts *testServer) int {
	t.Helper()
	r := ts.do("GET", "/metrics", "", nil)
	for _, line := range strings.Split(string(r.raw), "\n") {
		if v, ok := strings.CutPrefix(line, `llm4rec_batch_size_count{graph="fusion"} `); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return 0
}

// waitFor polls cond every 10ms for at most 20s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Exactly one replica learns (the learner lease's holder) and publishes snapshots; the others
// load them and end with the same learned state. Stopped, the learner hands the lease over,
// and the next one resumes from the last snapshot rather than relearning the stream.
func TestClusterOneLearner(t *testing.T) {
	n := natstest.Run(t)
	var rs []*testServer
	stops := map[*testServer]func(){}
	for range 3 {
		cfg := Config{Bundle: fakeBundle, DataDir: t.TempDir(), Feedback: n.URL(), FeedbackStream: "FB", SnapshotEvery: 5}
		s, err := NewWithBackend(cfg, &fakeBackend{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ts := serve(t, s)
		var once sync.Once
		stop := func() {
			once.Do(func() {
				ts.client.CloseIdleConnections()
				if err := s.Shutdown(); err != nil {
					t.Error(err)
				}
			})
		}
		t.Cleanup(stop)
		rs = append(rs, ts)
		stops[ts] = stop
	}
	leader := func(among []*testServer) *testServer {
		var found *testServer
		waitFor(t, "one learner", func() bool {
			found = nil
			for _, r := range among {
				if r.learnerLeads() {
					if found != nil {
						t.Fatal("two replicas learn at once")
					}
					found = r
				}
			}
			return found != nil
		})
		return found
	}
	first := leader(rs)
	base := time.Now().Add(-time.Hour).UnixMilli()
	for i := range 30 {
		if st, body := postEvents(rs[i%3].url, event("o", i, base)); st != 200 {
			t.Fatalf("feedback: %d %v", st, body)
		}
	}
	// learned is the sequence r's learner covers and its state
	learned := func(r *testServer) (uint64, string) {
		l := r.engines.acquire()
		defer l.release()
		b, _ := l.eng.Learner().MarshalBinary()
		return l.learned.Load(), string(b)
	}
	at := func(r, leader *testServer, seq uint64) bool {
		got, state := learned(r)
		_, want := learned(leader)
		return got == seq && state == want
	}
	for _, r := range rs {
		waitFor(t, "every replica at the learner's state of seq 30", func() bool {
			return at(r, first, 30)
		})
	}
	for _, r := range rs {
		want := 0
		if r == first {
			want = 30
		}
		if got := learnerSteps(t, r); got != want {
			t.Fatalf("a replica took %d learner steps, want %d (leader: %v)", got, want, r == first)
		}
	}
	stops[first]()
	var rest []*testServer
	for _, r := range rs {
		if r != first {
			rest = append(rest, r)
		}
	}
	second := leader(rest)
	for i := 30; i < 40; i++ {
		if st, body := postEvents(rest[i%2].url, event("o", i, base)); st != 200 {
			t.Fatalf("feedback: %d %v", st, body)
		}
	}
	for _, r := range rest {
		waitFor(t, "both replicas at seq 40", func() bool {
			return at(r, second, 40)
		})
	}
	for _, r := range rest {
		want := 0
		if r == second {
			want = 10 // from the snapshot at 30, not from the start
		}
		if got := learnerSteps(t, r); got != want {
			t.Fatalf("after the hand-over a replica took %d learner steps, want %d", got, want)
		}
	}
}

// refusingBackend is the fake backend, except that it fails to open one bundle: a replica
// where a new bundle does not load.
type refusingBackend struct {
	fakeBackend
	refuse string
}

func (b *refusingBackend) Open(dir string, cfg recommend.Config) (Recommender, error) {
	if dir == b.refuse {
		return nil, fmt.Errorf("refusing backend: %s does not load here", dir)
	}
	return b.fakeBackend.Open(dir, cfg)
}

// startWith serves cfg with backend until the test ends.
func startWith(t *testing.T, cfg Config, backend Backend) *testServer {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	s, err := NewWithBackend(cfg, backend, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, s)
	t.Cleanup(func() {
		ts.client.CloseIdleConnections()
		s.Shutdown()
	})
	return ts
}

// bundleOf is the bundle r serves now.
func bundleOf(r *testServer) string {
	l := r.engines.acquire()
	defer l.release()
	return l.bundle
}

// metric is the value of an unlabelled series in r's /metrics.
func metric(t *testing.T, r *testServer, name string) string {
	t.Helper()
	for _, line := range strings.Split(string(r.do("GET", "/metrics", "", nil).raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("no series %s", name)
	return ""
}

// A reload made at one replica reaches every replica; one where the new bundle fails keeps
// serving the old one and says so in readiness and metrics; a replica started later loads the
// bundle announced; the next rollout that loads clears the failure.
func TestClusterBundleRollout(t *testing.T) {
	n := natstest.Run(t)
	cfg := Config{Bundle: fakeBundle, Feedback: n.URL(), FeedbackStream: "FB"}
	a := startWith(t, cfg, &fakeBackend{})
	b := startWith(t, cfg, &fakeBackend{})
	c := startWith(t, cfg, &refusingBackend{refuse: fakeBundleReversed})
	r := a.do("POST", "/admin/models/reload", "", map[string]any{"bundle": fakeBundleReversed})
	if r.status != 200 || !strings.Contains(fmt.Sprint(r.body["rollout"]), "announced to every replica") {
		t.Fatalf("reload: %d %s", r.status, r.raw)
	}
	waitFor(t, "replica b on the new bundle", func() bool { return bundleOf(b) == fakeBundleReversed })
	waitFor(t, "replica c reports its failure", func() bool { return c.rolloutProblem() != "" })
	if bundleOf(a) != fakeBundleReversed || bundleOf(c) != fakeBundle {
		t.Fatalf("serving: a %s, c %s", bundleOf(a), bundleOf(c))
	}
	ready := c.do("GET", "/healthz/ready", "", nil)
	if ready.status != 200 || !strings.Contains(fmt.Sprint(ready.body["rollout"]), "does not load here") {
		t.Fatalf("readiness of the replica that failed: %d %s", ready.status, ready.raw)
	}
	if metric(t, c, "llm4rec_rollout_failed") != "1" || metric(t, b, "llm4rec_rollout_failed") != "0" {
		t.Fatal("llm4rec_rollout_failed does not tell the failed replica")
	}
	if r := b.do("GET", "/healthz/ready", "", nil); r.status != 200 || r.body["rollout"] != nil {
		t.Fatalf("readiness of a replica that loaded it: %d %s", r.status, r.raw)
	}
	late := startWith(t, cfg, &fakeBackend{})
	waitFor(t, "a late replica on the announced bundle", func() bool { return bundleOf(late) == fakeBundleReversed })
	if r := b.do("POST", "/admin/models/reload", "", map[string]any{"bundle": fakeBundle}); r.status != 200 {
		t.Fatalf("reload back: %d %s", r.status, r.raw)
	}
	for _, x := range []*testServer{a, c, late} {
		waitFor(t, "every replica back on the first bundle", func() bool { return bundleOf(x) == fakeBundle })
	}
	waitFor(t, "replica c's failure cleared", func() bool { return c.rolloutProblem() == "" })
}

// streamLeader is the name of the NATS server leading stream's replica group.
func streamLeader(t *testing.T, urls, stream string) string {
	t.Helper()
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("stream %s has no leader: %v", stream, err)
	}
	return info.Cluster.Leader
}

// The NATS server leading the stream killed with SIGKILL under load (no leadership handed
// over: the others elect one, seconds later): requests meanwhile are refused (503) and
// retried, acknowledged writes go on after the election, nothing acknowledged is lost or
// counted twice, and the server started again rejoins.
func TestClusterNATSNodeKilledUnderLoad(t *testing.T) {
	nodes := natstest.ProcessCluster(t, 3)
	var us []string
	for _, n := range nodes {
		us = append(us, n.URL())
	}
	natsURLs := strings.Join(us, ",")
	var urls []string
	for range 3 {
		urls = append(urls, startReplica(t, natsURLs, "FB", 3, nil).url)
	}
	g := newLoad("x", func() []string { return urls })
	const total = 600
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.run(total, 8, 5*time.Millisecond, time.Now().Add(90*time.Second))
	}()
	g.waitAcked(t, total/3)
	leader := streamLeader(t, natsURLs, "FB")
	var killed *natstest.ProcNode
	for _, n := range nodes {
		if n.Name() == leader {
			killed = n
		}
	}
	if killed == nil {
		t.Fatalf("no node named %s", leader)
	}
	at := time.Now()
	killed.Kill()
	g.waitAcked(t, total/2)
	<-done
	after := survivedNodeLoss(t, g, urls, total, at, "xu")
	killed.Start(t)
	if st, body := postEvents(urls[2], event("x", total, g.base)); st != 200 {
		t.Fatalf("after the node came back: %d %v", st, body)
	}
	t.Logf("killed %s; %d acknowledged after; %d failed attempts (retried)", leader, after, g.failures.Load())
}

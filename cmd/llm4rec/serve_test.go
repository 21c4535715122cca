package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the tests run this binary's main as a child process: with LLM4REC_CHILD_ARGS
// set (arguments separated by the unit separator 0x1f) the test binary is `llm4rec ARGS...`.
func TestMain(m *testing.M) {
	if args := os.Getenv("LLM4REC_CHILD_ARGS"); args != "" {
		os.Exit(run(strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func defaultBundle(t *testing.T) string {
	dir := os.Getenv("LLM4REC_TEST_BUNDLE")
	if dir == "" {
		dir, _ = filepath.Abs("../../models/movielens-100k/1")
	}
	for _, f := range []string{"manifest.json", "text_encoder.weights"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Skipf("default bundle not installed (%v): run `make weights`", err)
		}
	}
	return dir
}

type child struct {
	cmd  *exec.Cmd
	url  string
	logs *bytes.Buffer
	done chan error
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startServe(t *testing.T, addr, dataDir string) *child {
	t.Helper()
	args := []string{"serve", "--bundle", defaultBundle(t), "--addr", addr, "--data-dir", dataDir, "--provider", "cpu"}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LLM4REC_CHILD_ARGS="+strings.Join(args, "\x1f"), "LLM4REC_API_KEY=", "LLM4REC_ADMIN_KEY=")
	c := &child{cmd: cmd, url: "http://" + addr, logs: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = c.logs, c.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- cmd.Wait() }()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(c.url + "/healthz/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return c
			}
		}
		select {
		case err := <-c.done:
			t.Fatalf("server exited before ready: %v\n%s", err, c.logs)
		case <-time.After(100 * time.Millisecond):
		}
	}
	cmd.Process.Kill()
	t.Fatalf("server not ready in time:\n%s", c.logs)
	return nil
}

func postJSON(url string, body any) (int, map[string]any, error) {
	raw, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(raw))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	json.Unmarshal(data, &out)
	return resp.StatusCode, out, nil
}

// catalogIDs reads the bundle's item ids.
func catalogIDs(t *testing.T) []string {
	raw, err := os.ReadFile(filepath.Join(defaultBundle(t), "items.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var it struct {
			ID json.RawMessage `json:"item_id"`
		}
		if err := json.Unmarshal([]byte(line), &it); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, strings.Trim(string(it.ID), `"`))
	}
	return ids
}

func event(ids []string, i int) map[string]any {
	return map[string]any{"event_id": fmt.Sprintf("ev-%d", i), "user_id": fmt.Sprintf("user-%d", i%17),
		"item_id": ids[i%len(ids)], "type": "click", "timestamp": 1_700_000_000 + i}
}

// Every acknowledged event survives kill -9 of the server process.
func TestAcknowledgedFeedbackSurvivesKill9(t *testing.T) {
	dataDir := t.TempDir()
	addr := freeAddr(t)
	ids := catalogIDs(t)
	c := startServe(t, addr, dataDir)
	var mu sync.Mutex
	var acked []int
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; ; i += 8 {
				select {
				case <-stop:
					return
				default:
				}
				status, _, err := postJSON(c.url+"/v1/feedback", event(ids, i))
				if err != nil {
					return // the server is gone
				}
				if status == 200 {
					mu.Lock()
					acked = append(acked, i)
					mu.Unlock()
				}
			}
		}(g)
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 300 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	close(stop)
	wg.Wait()
	c2 := startServe(t, addr, dataDir)
	defer func() { c2.cmd.Process.Signal(syscall.SIGTERM); <-c2.done }()
	for _, i := range acked {
		// a retry of a stored event is a duplicate: so every acknowledged event is there
		status, body, err := postJSON(c2.url+"/v1/feedback", event(ids, i))
		if err != nil || status != 200 || body["duplicates"] != 1.0 {
			t.Fatalf("acknowledged event %d lost after kill -9: %d %v %v", i, status, body, err)
		}
	}
	t.Logf("%d acknowledged events all found after kill -9", len(acked))
}

// SIGTERM: the server stops being ready, finishes what it accepted, and exits 0.
func TestSIGTERMDrains(t *testing.T) {
	dataDir := t.TempDir()
	ids := catalogIDs(t)
	c := startServe(t, freeAddr(t), dataDir)
	type result struct {
		status int
		err    error
	}
	results := make(chan result, 64)
	var wg sync.WaitGroup
	for i := 0; i < 48; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var status int
			var err error
			if i%3 == 0 {
				status, _, err = postJSON(c.url+"/v1/feedback", event(ids, 10_000+i))
			} else {
				status, _, err = postJSON(c.url+"/v1/recommend", map[string]any{"history": []string{ids[i%len(ids)], ids[0]}, "k": 10, "explain": true, "query": fmt.Sprint("comedy ", i)})
			}
			results <- result{status, err}
		}(i)
	}
	time.Sleep(20 * time.Millisecond) // requests are in flight
	c.cmd.Process.Signal(syscall.SIGTERM)
	wg.Wait()
	close(results)
	served := 0
	for r := range results {
		if r.err != nil {
			continue // connection refused after the listener closed: never accepted
		}
		if r.status != 200 {
			t.Errorf("an accepted request was answered %d during the drain", r.status)
		}
		served++
	}
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, c.logs)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
	if !strings.Contains(c.logs.String(), "stopped cleanly") {
		t.Fatalf("no clean stop in the log:\n%s", c.logs)
	}
	t.Logf("%d requests served during the drain", served)
}

package server

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rssBytes is this process's resident set size (Linux).
func rssBytes(t *testing.T) int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// The body attack: 200 connections declare bodies of 15 to 16 MiB (fixed length or chunked),
// half without a key, and send a few kilobytes. Bodies are read only after authorization and
// within the server's body memory budget: requests without a key are answered 401 at once,
// those with one 503 at once once the budget (4 declared bodies) is taken, and the process
// grows by far less than the 3 GB the declared lengths add up to.
func TestBodyAttackStaysWithinTheBudget(t *testing.T) {
	key := "sekrit-inference-key"
	ts := start(t, func(c *Config) { c.APIKey = key; c.ReadTimeout = 3 * time.Second })
	if ts.cfg.MaxBodyMemory != 64<<20 || ts.cfg.MaxBodyBytes != 16<<20 {
		t.Fatalf("defaults changed: body memory %d, body bytes %d", ts.cfg.MaxBodyMemory, ts.cfg.MaxBodyBytes)
	}
	runtime.GC()
	debug.FreeOSMemory()
	idle := rssBytes(t)
	const conns = 200
	statuses := make([]int, conns)
	var wg sync.WaitGroup
	var peakMu sync.Mutex
	peak := idle
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(15 * time.Second))
			auth := ""
			if i%2 == 0 {
				auth = "Authorization: Bearer " + key + "\r\n"
			}
			if i%4 < 2 { // fixed length: 16 MiB declared, 9 KiB sent
				fmt.Fprintf(c, "POST /v1/feedback HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", auth, 16<<20, strings.Repeat(" ", 9<<10))
			} else { // chunked: one 15 MiB chunk declared, 1 KiB sent
				fmt.Fprintf(c, "POST /v1/feedback HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s", auth, 15<<20, strings.Repeat(" ", 1<<10))
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Errorf("connection %d: %v", i, err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
			if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
			rss := rssBytes(t)
			peakMu.Lock()
			peak = max(peak, rss)
			peakMu.Unlock()
		}(i)
	}
	wg.Wait()
	count := map[int]int{}
	for i, s := range statuses {
		count[s]++
		if i%2 == 1 && s != 401 {
			t.Errorf("connection %d without a key: %d, want 401", i, s)
		}
	}
	// at most 4 bodies of 16 MiB fit in 64 MiB: those are read until the read timeout (408)
	if count[503] < conns/2-4 || count[408] > 4 || count[401] != conns/2 {
		t.Errorf("statuses %v: want %d 401, at least %d 503, at most 4 408", count, conns/2, conns/2-4)
	}
	grown := peak - idle
	t.Logf("RSS idle %d MB, peak %d MB (+%d MB); statuses %v", idle>>20, peak>>20, grown>>20, count)
	if grown > 300<<20 {
		t.Fatalf("RSS grew by %d MB under the body attack, want under 300 MB", grown>>20)
	}
	// the budget is whole again: a normal request goes through
	if r := ts.do("POST", "/v1/feedback", key, map[string]any{"event_id": "ok-1", "user_id": "u1", "item_id": ts.catalog()[0], "type": "click", "timestamp": 1_700_000_000}); r.status != 200 {
		t.Fatalf("after the attack: %d %s", r.status, r.raw)
	}
}

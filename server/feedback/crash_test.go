package feedback

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCrashDurability runs a child process (this test binary again, FEEDBACK_CHILD=1) that
// appends from several goroutines and prints "ack ID" after each Append returns. The parent
// kills it with SIGKILL mid-stream, reopens the store and checks that every acknowledged
// event is there. SIGKILL loses the process, not the page cache; power loss is what fsync is
// for and is not simulated here.
func TestCrashDurability(t *testing.T) {
	if os.Getenv("FEEDBACK_CHILD") == "1" {
		crashChild()
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDurability$", "-test.v=false")
	cmd.Env = append(os.Environ(), "FEEDBACK_CHILD=1", "FEEDBACK_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const killAfter = 400
	acked := map[string]bool{}
	r := bufio.NewReader(out)
	deadline := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for len(acked) < killAfter {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("child stopped after %d acks: %v", len(acked), err)
		}
		if id, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "ack "); ok {
			acked[id] = true
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Acks already in the pipe were acknowledged before the kill: count them too. Only whole
	// lines count.
	rest, _ := io.ReadAll(r)
	lines := strings.Split(string(rest), "\n")
	for _, line := range lines[:len(lines)-1] {
		if id, ok := strings.CutPrefix(line, "ack "); ok {
			acked[id] = true
		}
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", err)
	}

	s := openTest(t, dir, Config{})
	stored := map[string]uint64{}
	err = s.Replay(0, func(seq uint64, e Event) error {
		if prev, dup := stored[e.EventID]; dup {
			return fmt.Errorf("event %s stored twice, seqs %d and %d", e.EventID, prev, seq)
		}
		stored[e.EventID] = seq
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id := range acked {
		if _, ok := stored[id]; !ok {
			t.Errorf("acknowledged event %s lost", id)
		}
	}
	if s.LastSeq() != uint64(len(stored)) {
		t.Fatalf("LastSeq %d with %d events stored", s.LastSeq(), len(stored))
	}
	// The store is usable and still deduplicates what the child wrote.
	for id := range acked {
		e := ev(id)
		if res := mustAppend(t, s, e); res.Duplicates != 1 {
			t.Fatalf("re-append of %s: %+v", id, res)
		}
		break
	}
	t.Logf("child acknowledged %d events before SIGKILL; %d found stored (unacknowledged commits may also survive)", len(acked), len(stored))
}

// crashChild appends until killed. Each ack line is one write to the unbuffered stdout, so
// the parent never reads an ack for an Append that has not returned.
func crashChild() {
	s, err := Open(os.Getenv("FEEDBACK_DIR"), Config{Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				e := ev(fmt.Sprintf("w%d-%d", w, i))
				if _, err := s.Append(context.Background(), e); err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(2)
				}
				mu.Lock()
				_, _ = os.Stdout.WriteString("ack " + e.EventID + "\n")
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

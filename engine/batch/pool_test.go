package batch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// A lone caller uses the first replica; a caller arriving while the first is busy goes to the
// second, and gets its own answer.
func TestPoolSpreadsConcurrentCallers(t *testing.T) {
	if _, err := NewPool(nil, Config{}); err == nil {
		t.Fatal("a pool of no runners accepted")
	}
	a, b := &fakeRunner{}, &fakeRunner{}
	p, err := NewPool([]Runner{a, b}, Config{MaxBatch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Replicas() != 2 {
		t.Fatalf("%d replicas", p.Replicas())
	}
	for i := 0; i < 3; i++ {
		if _, err := p.Submit(context.Background(), x(1, 2)); err != nil {
			t.Fatal(err)
		}
	}
	if a.count() != 3 || b.count() != 0 {
		t.Fatalf("lone callers: %d batches on the first replica, %d on the second", a.count(), b.count())
	}

	held := &fakeRunner{hold: make(chan struct{}), started: make(chan struct{}, 1)}
	free := &fakeRunner{}
	q, err := NewPool([]Runner{held, free}, Config{MaxBatch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	first := make(chan error, 1)
	go func() {
		_, err := q.Submit(context.Background(), x(3, 4))
		first <- err
	}()
	<-held.started // the first replica is running that request and holds it
	out, err := q.Submit(context.Background(), x(5, 6))
	if err != nil || out[0].Float32[0] != 10 || out[0].Float32[1] != 12 || free.count() != 1 {
		t.Fatalf("with the first replica busy: %v %v, the second ran %d batches", out, err, free.count())
	}
	if q.QueueDepth() != 0 {
		t.Fatalf("queue depth %d with nothing queued", q.QueueDepth())
	}
	close(held.hold)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// Under a steady concurrent load both replicas run batches (a replica that runs slower gets
// fewer); Close runs what was accepted and later calls answer ErrClosed.
func TestPoolUsesEveryReplicaUnderLoad(t *testing.T) {
	a := &sleepRunner{d: 2 * time.Millisecond}
	b := &sleepRunner{d: 2 * time.Millisecond}
	p, err := NewPool([]Runner{a, b}, Config{MaxBatch: 2, MaxWait: 100 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				v := float32(c*100 + i)
				out, err := p.Submit(context.Background(), x(v, v))
				if err != nil || out[0].Float32[0] != 2*v {
					t.Errorf("caller %d: %v %v", c, out, err)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	if a.count() == 0 || b.count() == 0 {
		t.Fatalf("16 callers: %d batches on the first replica, %d on the second", a.count(), b.count())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := p.Submit(context.Background(), x(1, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

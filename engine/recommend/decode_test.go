package recommend

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/llm4rec/llm4rec/engine/batch"
)

// Images and WAVs are decoded at most Config.MaxDecodes at a time: with every slot taken, a
// request waits for one within its deadline and is answered ErrDeadline when the deadline
// passes first; once a slot frees, the same picture decodes.
func TestDecodesAreBounded(t *testing.T) {
	e := testEngine(t)
	img, err := os.ReadFile(filepath.Join(e.dir, "golden", "image.png"))
	if err != nil {
		t.Fatal(err)
	}
	// bytes after the PNG and the WAV: keys no earlier run cached, the same contents
	tag := []byte(time.Now().String())
	img = append(img, tag...)
	wav, err := os.ReadFile(filepath.Join(e.dir, "golden", "audio.wav"))
	if err != nil {
		t.Fatal(err)
	}
	wav = append(wav, tag...)
	held := 0
	release := func() {
		for ; held > 0; held-- {
			<-e.decodes
		}
	}
	t.Cleanup(release)
	for range cap(e.decodes) {
		e.decodes <- struct{}{}
		held++
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.EmbedImage(ctx, img); !errors.Is(err, batch.ErrDeadline) {
		t.Fatalf("image with every decoding slot taken: %v", err)
	}
	if _, err := e.EmbedAudio(ctx, wav); !errors.Is(err, batch.ErrDeadline) {
		t.Fatalf("audio with every decoding slot taken: %v", err)
	}
	release()
	// with a slot free but the decoding memory taken, the same: the request waits within its
	// deadline
	if !e.decodeMem.TryAcquire(e.cfg.MaxDecodeMemory) {
		t.Fatal("decoding memory in use by nothing")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	_, err = e.EmbedImage(ctx2, img)
	e.decodeMem.Release(e.cfg.MaxDecodeMemory)
	if !errors.Is(err, batch.ErrDeadline) || !strings.Contains(err.Error(), "decoding memory") {
		t.Fatalf("image with the decoding memory taken: %v", err)
	}
	if _, err := e.EmbedImage(context.Background(), img); err != nil {
		t.Fatalf("image once a slot is free: %v", err)
	}
	if len(e.decodes) != 0 {
		t.Fatalf("%d decoding slots still held", len(e.decodes))
	}
	if !e.decodeMem.TryAcquire(e.cfg.MaxDecodeMemory) {
		t.Fatal("decoding memory still held after the decodes")
	}
	e.decodeMem.Release(e.cfg.MaxDecodeMemory)
}

// decodeEngine has the decoding limits only: one slot and 100 bytes of budget.
func decodeEngine() *Engine {
	return &Engine{decodes: make(chan struct{}, 1), decodeMem: semaphore.NewWeighted(100)}
}

// A request whose deadline passes during its decode is answered at the deadline (504); the
// decode finishes in the background and keeps its reservation until then, so the budget still
// bounds the memory of decodes in progress.
func TestDecodeAnswersAtTheDeadline(t *testing.T) {
	e := decodeEngine()
	unblock, finished := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := e.decodeWithin(ctx, "image", 100, func() error {
		<-unblock
		close(finished)
		return nil
	})
	if !errors.Is(err, batch.ErrDeadline) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the deadline", err)
	}
	select {
	case <-finished:
		t.Fatal("answered only after the decode finished")
	default:
	}
	if e.decodeMem.TryAcquire(1) {
		t.Fatal("the unfinished decode's reservation was given back")
	}
	close(unblock)
	<-finished
	for i := 0; !e.decodeMem.TryAcquire(100); i++ {
		if i > 1000 {
			t.Fatal("the reservation is never given back")
		}
		time.Sleep(time.Millisecond)
	}
	e.decodeMem.Release(100)
	// a failed decode is the request's fault
	if err := e.decodeWithin(context.Background(), "image", 10, func() error { return errors.New("bad png") }); !errors.Is(err, ErrRequest) {
		t.Errorf("decode error: %v", err)
	}
}

// Once decodes have been timed, one expected to outlast the request's deadline is refused at
// once (503, nothing decoded) and gives its slot and reservation back.
func TestDecodeAdmissionByDeadline(t *testing.T) {
	e := decodeEngine()
	e.decodeCost.observe(100, time.Second) // 10 ms per byte
	ran := false
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.decodeWithin(ctx, "image", 50, func() error { ran = true; return nil }); !errors.Is(err, batch.ErrWouldMissDeadline) || ran {
		t.Fatalf("500 ms expected, 200 ms left: %v (ran %v)", err, ran)
	}
	if !e.decodeMem.TryAcquire(100) {
		t.Fatal("the refused decode kept its reservation")
	}
	e.decodeMem.Release(100)
	// 10 bytes: 100 ms expected, it fits
	if err := e.decodeWithin(ctx, "image", 10, func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("a decode that fits: %v (ran %v)", err, ran)
	}
	// without a deadline nothing is refused
	if err := e.decodeWithin(context.Background(), "image", 100, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// A large decode gives the freed memory back to the operating system, at most once per
// freeEvery: a burst gets one call at once and one trailing call at the end of the window,
// a small decode none.
func TestLargeDecodeGivesMemoryBack(t *testing.T) {
	var calls atomic.Int64
	oldFree, oldEvery := freeOSMemory, freeEvery
	freeOSMemory = func() { calls.Add(1) }
	freeEvery = 100 * time.Millisecond
	t.Cleanup(func() { freeOSMemory, freeEvery = oldFree, oldEvery })
	lastFree.Store(0)
	e := &Engine{decodes: make(chan struct{}, 1), decodeMem: semaphore.NewWeighted(2 * largeDecode)}
	for _, need := range []int64{largeDecode - 1, largeDecode, largeDecode, largeDecode} {
		if err := e.decodeWithin(context.Background(), "image", need, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("%d calls during the burst, want 1 (the small decode none, the later large ones within the window)", calls.Load())
	}
	for i := 0; calls.Load() < 2; i++ {
		if i > 200 {
			t.Fatal("no trailing call at the end of the window")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(3 * freeEvery)
	if calls.Load() != 2 || freePending.Load() {
		t.Errorf("%d calls after the burst, want 2 (one at once, one trailing)", calls.Load())
	}
}

package recommend

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm4rec/llm4rec/engine/batch"
)

// largeDecode is the reservation from which a finished decode gives its memory back to the
// operating system (freeOSMemory, at most once per freeEvery, and once more at the end of
// the window when a call fell inside it), so that a burst of large pictures does not leave
// the process holding the burst's peak.
const largeDecode = 64 << 20

// freeOSMemory is debug.FreeOSMemory and freeEvery its spacing; variables for the test.
var (
	freeOSMemory = debug.FreeOSMemory
	freeEvery    = 500 * time.Millisecond
	lastFree     atomic.Int64 // unix nanoseconds of the last freeOSMemory
	freePending  atomic.Bool  // a trailing call is scheduled
)

// decodeCost follows how long decodes take per byte of their reservation (an exponentially
// weighted mean), so that a decode that cannot finish before its request's deadline is
// refused before it starts. The zero value knows nothing yet and admits everything.
type decodeCost struct {
	mu        sync.Mutex
	nsPerByte float64
}

func (c *decodeCost) observe(bytes int64, d time.Duration) {
	if bytes <= 0 || d <= 0 {
		return
	}
	x := float64(d.Nanoseconds()) / float64(bytes)
	c.mu.Lock()
	if c.nsPerByte == 0 {
		c.nsPerByte = x
	} else {
		c.nsPerByte = 0.8*c.nsPerByte + 0.2*x
	}
	c.mu.Unlock()
}

// expected is the time a decode reserving bytes is expected to take (0: no estimate yet).
func (c *decodeCost) expected(bytes int64) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Duration(c.nsPerByte * float64(bytes))
}

// decodeWithin runs decode, which allocates at most need bytes, within ctx and the decoding
// limits: it waits (within ctx) for a slot and for need bytes of the memory budget; refuses at
// once (batch.ErrWouldMissDeadline, 503) when the decodes seen so far say it would not finish
// before the deadline; and answers when the deadline passes (batch.ErrDeadline, 504) even
// if the decode is still running. The image and WAV decoders cannot be interrupted, so a
// decode that outlives its request runs to its end in the background, holding its slot and
// reservation until then (the memory bound holds), and its result is dropped.
func (e *Engine) decodeWithin(ctx context.Context, what string, need int64, decode func() error) error {
	release, err := e.decodeSlot(ctx, what, need)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		if exp, left := e.decodeCost.expected(need), time.Until(dl); exp > 0 && left < exp {
			release()
			return fmt.Errorf("%w: decoding the %s takes about %s, %s left", batch.ErrWouldMissDeadline,
				what, exp.Round(time.Millisecond), left.Round(time.Millisecond))
		}
	}
	done := make(chan error, 1)
	go func() {
		t0 := time.Now()
		err := decode()
		e.decodeCost.observe(need, time.Since(t0))
		release()
		if need >= largeDecode {
			giveBackMemory()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrRequest, what, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: decoding the %s: %w", batch.ErrDeadline, what, ctx.Err())
	}
}

// giveBackMemory returns freed heap to the operating system, at most once per freeEvery; a
// call inside the window schedules one at its end, so the last decodes of a burst are given
// back too.
func giveBackMemory() {
	now := time.Now().UnixNano()
	last := lastFree.Load()
	if wait := int64(freeEvery) - (now - last); wait > 0 {
		if freePending.CompareAndSwap(false, true) {
			time.AfterFunc(time.Duration(wait), func() {
				freePending.Store(false)
				giveBackMemory()
			})
		}
		return
	}
	if lastFree.CompareAndSwap(last, now) {
		freeOSMemory()
	}
}

// decodeSlot waits, within ctx, for one of the Config.MaxDecodes decoding slots and then for
// need bytes of the Config.MaxDecodeMemory budget; release gives both back.
func (e *Engine) decodeSlot(ctx context.Context, what string, need int64) (release func(), err error) {
	select {
	case e.decodes <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting to decode the %s: %w", batch.ErrDeadline, what, ctx.Err())
	}
	if err := e.decodeMem.Acquire(ctx, need); err != nil {
		<-e.decodes
		return nil, fmt.Errorf("%w: waiting for %d MiB of decoding memory for the %s: %w", batch.ErrDeadline, need>>20, what, err)
	}
	return func() {
		e.decodeMem.Release(need)
		<-e.decodes
	}, nil
}

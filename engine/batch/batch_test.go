package batch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/llm4rec/llm4rec/internal/racemode"
	"time"

	"github.com/llm4rec/llm4rec/engine/ort"
)

func embedSession(t testing.TB) *ort.Session {
	t.Helper()
	rt, err := ort.Open(ort.Options{Provider: ort.ProviderCPU})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	s, err := rt.NewSession("../ort/testdata/embed.onnx", ort.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func embedRequest(rng *rand.Rand, rows, seq int) []ort.Tensor {
	ids := make([]int64, rows*seq)
	mask := make([]float32, rows*seq)
	for i := range ids {
		ids[i] = int64(rng.IntN(10))
		mask[i] = 1
	}
	return []ort.Tensor{
		{Name: "ids", Shape: []int64{int64(rows), int64(seq)}, Int64: ids},
		{Name: "mask", Shape: []int64{int64(rows), int64(seq)}, Float32: mask},
	}
}

// gatedRunner holds every Run until open is closed and reports whether any batch was padded
// (the test inputs' mask is 1 on every real position, so a 0 is padding).
type gatedRunner struct {
	Runner
	open   chan struct{}
	padded atomic.Bool
}

func (g *gatedRunner) Run(in []ort.Tensor) ([]ort.Tensor, error) {
	<-g.open
	for _, t := range in {
		if t.Name == "mask" && slices.Contains(t.Float32, 0) {
			g.padded.Store(true)
		}
	}
	return g.Runner.Run(in)
}

// waitForCallers waits until n callers are inside b.Submit, so that whatever runs next is
// batched from a queue that holds them all, however the goroutines were scheduled.
func waitForCallers(t *testing.T, b *Batcher, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.waiting.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d callers reached Submit", b.waiting.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// gatedViewRunner is gatedRunner for a runner that lends its outputs (RunView).
type gatedViewRunner struct {
	*ort.Session
	open   chan struct{}
	padded atomic.Bool
}

func (g *gatedViewRunner) RunView(in []ort.Tensor, use func([]ort.Tensor) error) error {
	<-g.open
	for _, t := range in {
		if t.Name == "mask" && slices.Contains(t.Float32, 0) {
			g.padded.Store(true)
		}
	}
	return g.Session.RunView(in, use)
}

// An input's output through the batcher, padded among other requests of other lengths, equals
// its output run alone, whether the runner returns its outputs (Submit) or lends them
// (SubmitInto, each caller answered twice into the same Outputs). The first run is held until
// all 64 callers are waiting: a batcher runs a lone caller at once, so without the hold whether
// requests share a batch would depend on how the goroutines happen to be scheduled.
func TestBatchInvariance(t *testing.T) {
	t.Run("returned", func(t *testing.T) { testBatchInvariance(t, false) })
	t.Run("lent", func(t *testing.T) { testBatchInvariance(t, true) })
}

func testBatchInvariance(t *testing.T, lent bool) {
	sess := embedSession(t)
	const callers = 64
	reqs := make([][]ort.Tensor, callers)
	alone := make([][]ort.Tensor, callers)
	for g := range reqs {
		rng := rand.New(rand.NewPCG(uint64(g), 9))
		reqs[g] = embedRequest(rng, 1+g%3, 1+rng.IntN(12))
		out, err := sess.Run(reqs[g])
		if err != nil {
			t.Fatal(err)
		}
		alone[g] = out
	}
	open := make(chan struct{})
	var runner Runner = &gatedRunner{Runner: sess, open: open}
	padded := &runner.(*gatedRunner).padded
	if lent {
		g := &gatedViewRunner{Session: sess, open: open}
		runner, padded = g, &g.padded
	}
	var batches, batchedRows atomic.Int64
	// MaxWait only matters while a caller counted as waiting is still on its way into the
	// queue; a long one keeps a descheduled caller from closing a batch early.
	b := New(runner, Config{MaxBatch: 16, MaxWait: time.Second,
		Observe: func(rows int, _ time.Duration, _ error) { batches.Add(1); batchedRows.Add(int64(rows)) }})
	defer b.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 2*callers)
	for g := range reqs {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var out Outputs
			for range 1 + btoi(lent) {
				if err := compareAlone(b, reqs[g], alone[g], &out, lent); err != nil {
					errs <- fmt.Errorf("request %d: %w", g, err)
					return
				}
			}
		}(g)
	}
	waitForCallers(t, b, callers)
	close(open)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// 127 rows (the sum of 1+g%3 over g < 64). Once all callers wait, every batch but the last
	// closes at 14 rows or more (a request has at most 3), so the first batch, whatever it
	// held, and at most ceil(127/14) = 10 more make 11 runs (the lent callers' second requests
	// come after, as they come).
	if first := int64(127); batchedRows.Load() != first*(1+int64(btoi(lent))) || !lent && batches.Load() > 11 {
		t.Fatalf("%d batches for %d callers (%d rows): want at most 11", batches.Load(), callers, batchedRows.Load())
	}
	if !padded.Load() {
		t.Fatal("no batch mixed sequence lengths: padding was not exercised")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// compareAlone submits one request (into out when lent) and compares its first output with
// the request's output run alone.
func compareAlone(b *Batcher, req, alone []ort.Tensor, out *Outputs, lent bool) error {
	var got []ort.Tensor
	var err error
	if lent {
		got, err = b.SubmitInto(context.Background(), req, out)
	} else {
		got, err = b.Submit(context.Background(), req)
	}
	if err != nil {
		return err
	}
	if lent && &got[0] != &out.Tensors()[0] {
		return fmt.Errorf("the outputs are not in the given Outputs")
	}
	want := alone[0]
	if fmt.Sprint(got[0].Shape) != fmt.Sprint(want.Shape) {
		return fmt.Errorf("shape %v, alone %v", got[0].Shape, want.Shape)
	}
	for i := range want.Float32 {
		if math.Abs(float64(got[0].Float32[i]-want.Float32[i])) > 1e-6 {
			return fmt.Errorf("batched %v alone %v", got[0].Float32, want.Float32)
		}
	}
	return nil
}

// fakeRunner records batches and can hold Run until released.
type fakeRunner struct {
	mu      sync.Mutex
	batches [][]ort.Tensor
	hold    chan struct{}
	started chan struct{}
}

func (f *fakeRunner) Inputs() []ort.TensorInfo {
	return []ort.TensorInfo{{Name: "x", DType: ort.Float32, Shape: []int64{-1, 2}}}
}

func (f *fakeRunner) Run(in []ort.Tensor) ([]ort.Tensor, error) {
	if f.started != nil {
		f.started <- struct{}{}
	}
	if f.hold != nil {
		<-f.hold
	}
	// a copy: the batcher reuses its input buffers once Run returns (Runner's contract)
	kept := make([]ort.Tensor, len(in))
	for i, t := range in {
		kept[i] = ort.Tensor{Name: t.Name, Shape: slices.Clone(t.Shape), Float32: slices.Clone(t.Float32), Int64: slices.Clone(t.Int64)}
	}
	f.mu.Lock()
	f.batches = append(f.batches, kept)
	f.mu.Unlock()
	out := ort.Tensor{Name: "y", Shape: []int64{in[0].Shape[0], 2}, Float32: make([]float32, len(in[0].Float32))}
	for i, v := range in[0].Float32 {
		out.Float32[i] = v * 2
	}
	return []ort.Tensor{out}, nil
}

func (f *fakeRunner) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.batches)
}

func x(vals ...float32) []ort.Tensor {
	return []ort.Tensor{{Name: "x", Shape: []int64{int64(len(vals) / 2), 2}, Float32: vals}}
}

func TestQueueFullAnswersAtOnce(t *testing.T) {
	f := &fakeRunner{hold: make(chan struct{}), started: make(chan struct{}, 8)}
	b := New(f, Config{MaxBatch: 1, QueueSize: 1, NoWait: true})
	defer b.Close()
	go b.Submit(context.Background(), x(1, 1)) // runs and holds
	<-f.started
	queued := make(chan error, 1)
	go func() { _, err := b.Submit(context.Background(), x(2, 2)); queued <- err }() // fills the queue
	deadline := time.Now().Add(5 * time.Second)
	for b.QueueDepth() < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	_, err := b.Submit(context.Background(), x(3, 3))
	if !errors.Is(err, ErrQueueFull) || time.Since(start) > time.Second {
		t.Fatalf("full queue: %v after %v", err, time.Since(start))
	}
	close(f.hold)
	<-f.started
	if err := <-queued; err != nil {
		t.Fatal(err)
	}
	for _, bt := range f.batches {
		if bt[0].Float32[0] == 3 {
			t.Fatal("the refused request reached Run")
		}
	}
}

func TestDeadlineNeverReachesRun(t *testing.T) {
	f := &fakeRunner{hold: make(chan struct{}), started: make(chan struct{}, 8)}
	b := New(f, Config{MaxBatch: 1, NoWait: true})
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Submit(ctx, x(1, 1)); !errors.Is(err, ErrDeadline) {
		t.Fatalf("expired context: %v", err)
	}
	// A request whose deadline passes while it waits in the queue is answered without running.
	go b.Submit(context.Background(), x(5, 5))
	<-f.started
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := b.Submit(ctx, x(7, 7)); done <- err }()
	time.Sleep(50 * time.Millisecond)
	close(f.hold)
	if err := <-done; !errors.Is(err, ErrDeadline) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline while queued: %v", err)
	}
	if f.count() != 1 {
		t.Fatalf("%d runs, want 1 (the expired request must not run)", f.count())
	}
}

func TestBatchesFormUpToMaxBatch(t *testing.T) {
	// The first Run is held until all 32 callers wait, so batches form from a full queue
	// rather than from however the goroutines happened to be scheduled.
	f := &fakeRunner{hold: make(chan struct{})}
	b := New(f, Config{MaxBatch: 8, MaxWait: time.Second})
	defer b.Close()
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, err := b.Submit(context.Background(), x(float32(i), -float32(i)))
			if err != nil || out[0].Float32[0] != float32(2*i) || out[0].Float32[1] != -float32(2*i) {
				t.Errorf("request %d: %v %v", i, out, err)
			}
		}(i)
	}
	waitForCallers(t, b, 32)
	close(f.hold)
	wg.Wait()
	rows := 0
	for _, bt := range f.batches {
		if bt[0].Shape[0] > 8 {
			t.Fatalf("batch of %d rows, max 8", bt[0].Shape[0])
		}
		rows += int(bt[0].Shape[0])
	}
	// The held first batch, whatever it holds, then full batches of 8: at most 1+ceil(31/8).
	if rows != 32 || len(f.batches) > 5 {
		t.Fatalf("%d batches, %d rows: want at most 5", len(f.batches), rows)
	}
}

func TestInputsCopiedBeforeQueuing(t *testing.T) {
	f := &fakeRunner{hold: make(chan struct{}), started: make(chan struct{}, 8)}
	b := New(f, Config{MaxBatch: 4, NoWait: true})
	defer b.Close()
	buf := []float32{1, 2}
	done := make(chan []ort.Tensor, 1)
	go func() { out, _ := b.Submit(context.Background(), x(buf...)); done <- out }()
	<-f.started
	buf[0], buf[1] = 99, 99 // the caller reuses its buffer while the batch is running
	close(f.hold)
	out := <-done
	if out[0].Float32[0] != 2 || out[0].Float32[1] != 4 {
		t.Fatalf("output %v: the batcher read the caller's buffer after queuing", out[0].Float32)
	}
}

func TestBadRequests(t *testing.T) {
	b := New(&fakeRunner{}, Config{MaxBatch: 2})
	defer b.Close()
	cases := map[string][]ort.Tensor{
		"too many rows":  x(1, 2, 3, 4, 5, 6),
		"unknown input":  {{Name: "z", Shape: []int64{1, 2}, Float32: []float32{1, 2}}},
		"wrong rank":     {{Name: "x", Shape: []int64{2}, Float32: []float32{1, 2}}},
		"short data":     {{Name: "x", Shape: []int64{1, 2}, Float32: []float32{1}}},
		"zero rows":      {{Name: "x", Shape: []int64{0, 2}, Float32: []float32{}}},
		"negative shape": {{Name: "x", Shape: []int64{-1, 2}, Float32: []float32{1, 2}}},
		"no inputs":      {},
	}
	for name, in := range cases {
		if _, err := b.Submit(context.Background(), in); !errors.Is(err, ort.ErrInput) {
			t.Errorf("%s: %v, want ErrInput", name, err)
		}
	}
}

// Close runs what was accepted (a graceful shutdown drops nothing) and refuses what comes after.
func TestCloseDrainsAccepted(t *testing.T) {
	f := &fakeRunner{hold: make(chan struct{}), started: make(chan struct{}, 8)}
	b := New(f, Config{MaxBatch: 1, NoWait: true})
	first := make(chan error, 1)
	go func() { _, err := b.Submit(context.Background(), x(1, 1)); first <- err }()
	<-f.started
	queued := make(chan error, 1)
	go func() { _, err := b.Submit(context.Background(), x(2, 2)); queued <- err }()
	for b.QueueDepth() < 1 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	time.Sleep(10 * time.Millisecond)
	close(f.hold) // the running batch finishes; Close waits for it
	<-closed
	if err := <-first; err != nil {
		t.Fatalf("running request: %v", err)
	}
	if err := <-queued; err != nil {
		t.Fatalf("queued request: %v", err)
	}
	if f.count() != 2 {
		t.Fatalf("%d runs, want 2", f.count())
	}
	if _, err := b.Submit(context.Background(), x(3, 3)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	b.Close()
}

// A request queued behind a running batch runs as soon as that batch ends when it is the only
// caller left: callers already answered do not count as waiting, so it does not pay MaxWait.
func TestNextBatchDoesNotWaitForAnsweredCallers(t *testing.T) {
	for i := 0; i < 20; i++ {
		f := &fakeRunner{hold: make(chan struct{}), started: make(chan struct{}, 8)}
		b := New(f, Config{MaxBatch: 4, MaxWait: time.Second})
		first := make(chan error, 1)
		go func() { _, err := b.Submit(context.Background(), x(1, 1)); first <- err }()
		<-f.started
		second := make(chan time.Duration, 1)
		go func() {
			start := time.Now()
			if _, err := b.Submit(context.Background(), x(2, 2)); err != nil {
				t.Error(err)
			}
			second <- time.Since(start)
		}()
		for b.QueueDepth() < 1 {
			time.Sleep(time.Millisecond)
		}
		close(f.hold)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if d := <-second; d > 500*time.Millisecond {
			t.Fatalf("round %d: the second request waited %v behind an answered caller (MaxWait 1s)", i, d)
		}
		b.Close()
	}
}

// sleepRunner takes d per batch and counts the rows it ran.
type sleepRunner struct {
	fakeRunner
	d time.Duration
}

func (s *sleepRunner) Run(in []ort.Tensor) ([]ort.Tensor, error) {
	time.Sleep(s.d)
	return s.fakeRunner.Run(in)
}

// A request whose deadline is nearer than the batches ahead of it would take is refused at
// once (a kind of ErrQueueFull, never run); one with time enough waits its turn; the queue
// wait of each request is observed.
func TestAdmissionByDeadline(t *testing.T) {
	var waits atomic.Int64
	r := &sleepRunner{d: 30 * time.Millisecond}
	b := New(r, Config{MaxBatch: 1, NoWait: true, ObserveWait: func(time.Duration) { waits.Add(1) }})
	defer b.Close()
	if b.ExpectedWait() != 0 {
		t.Fatalf("expected wait %v before any run, want 0", b.ExpectedWait())
	}
	if _, err := b.Submit(context.Background(), x(1, 1)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); b.Submit(context.Background(), x(2, 2)) }()
	}
	waitForCallers(t, b, 3)
	if w := b.ExpectedWait(); w < 60*time.Millisecond {
		t.Fatalf("expected wait %v with 3 requests of ~30ms ahead", w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Submit(ctx, x(9, 9))
	if !errors.Is(err, ErrWouldMissDeadline) || !errors.Is(err, ErrQueueFull) {
		t.Fatalf("request that cannot make its deadline: %v", err)
	}
	if time.Since(start) >= 40*time.Millisecond {
		t.Fatalf("refused only after %v", time.Since(start))
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, err := b.Submit(ctx2, x(4, 4)); err != nil {
		t.Fatalf("request with time enough: %v", err)
	}
	wg.Wait()
	for _, bt := range r.batches {
		if bt[0].Float32[0] == 9 {
			t.Fatal("the refused request reached Run")
		}
	}
	if waits.Load() != 5 {
		t.Fatalf("%d queue waits observed, want 5 (every request that ran)", waits.Load())
	}
}

// An admitted request (Admitted) is never refused by its expected wait halfway through its
// work: it waits its turn and meets its deadline (ErrDeadline) when the turn comes too late,
// where the same request not admitted is refused at once; neither reaches Run.
func TestAdmittedIsNotRefusedHalfway(t *testing.T) {
	r := &sleepRunner{d: 40 * time.Millisecond}
	b := New(r, Config{MaxBatch: 1, NoWait: true})
	defer b.Close()
	if _, err := b.Submit(context.Background(), x(1, 1)); err != nil { // a run time to go by
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); b.Submit(context.Background(), x(2, 2)) }()
	}
	waitForCallers(t, b, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := b.Submit(ctx, x(8, 8)); !errors.Is(err, ErrWouldMissDeadline) {
		t.Fatalf("not admitted: %v, want a refusal", err)
	}
	_, err := b.Submit(Admitted(ctx), x(9, 9))
	if errors.Is(err, ErrWouldMissDeadline) || !errors.Is(err, ErrDeadline) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("admitted: %v, want its deadline", err)
	}
	wg.Wait()
	for _, bt := range r.batches {
		if v := bt[0].Float32[0]; v == 8 || v == 9 {
			t.Fatalf("request %v reached Run", v)
		}
	}
}

// viewRunner lends what fakeRunner returns, or, with summary, one output of five values that
// does not lead with the batch's rows.
type viewRunner struct {
	fakeRunner
	summary bool
}

func (v *viewRunner) RunView(in []ort.Tensor, use func([]ort.Tensor) error) error {
	out, err := v.fakeRunner.Run(in)
	if err != nil {
		return err
	}
	if v.summary {
		out = []ort.Tensor{{Name: "s", Shape: []int64{5}, Float32: []float32{1, 2, 3, 4, 5}}}
	}
	return use(out)
}

// Lent outputs that do not lead with the batch's rows cannot be split: a batch of one gets
// them whole (as Submit gives them), a batch of several gets an error naming the output, and
// nobody gets another's data.
func TestLentOutputsWithoutRowsFirst(t *testing.T) {
	v := &viewRunner{summary: true}
	b := New(v, Config{MaxBatch: 8, MaxWait: time.Second})
	defer b.Close()
	out, err := b.SubmitInto(context.Background(), x(1, 2), new(Outputs))
	if err != nil || !slices.Equal(out[0].Float32, []float32{1, 2, 3, 4, 5}) || !slices.Equal(out[0].Shape, []int64{5}) {
		t.Fatalf("a batch of one: %v, %v", out, err)
	}
	v.hold = make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = b.SubmitInto(context.Background(), x(float32(i), 0), new(Outputs))
		}(i)
	}
	waitForCallers(t, b, 4)
	close(v.hold)
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if err != nil {
			if !strings.Contains(err.Error(), `output "s" has shape [5]`) {
				t.Fatalf("error %q does not name the output and its shape", err)
			}
			failed++
		}
	}
	if failed < 2 {
		t.Fatalf("%d of 4 requests failed: the held batch of several should have", failed)
	}
}

// A warm request through a runner that lends its outputs, answered into the caller's
// Outputs, allocates nothing (request, copies and answer recycled; the session's bound run
// allocates nothing in Go).
func TestSubmitIntoAllocatesNothingWarm(t *testing.T) {
	if racemode.Enabled {
		t.Skip("allocations are counted without the race detector (its sync.Pool drops items at random)")
	}
	b := New(embedSession(t), Config{})
	defer b.Close()
	req := embedRequest(rand.New(rand.NewPCG(1, 1)), 2, 5)
	var out Outputs
	ctx := context.Background()
	for range 3 {
		if _, err := b.SubmitInto(ctx, req, &out); err != nil {
			t.Fatal(err)
		}
	}
	if a := testing.AllocsPerRun(100, func() {
		if _, err := b.SubmitInto(ctx, req, &out); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("a warm SubmitInto allocates %v times", a)
	}
}

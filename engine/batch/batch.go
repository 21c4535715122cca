// Package batch is the engine's dynamic batcher: requests for one graph queue (bounded), form
// batches up to a maximum size or a maximum wait, run once per batch and get their rows back.
package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm4rec/llm4rec/engine/ort"
)

// Errors a request can get without reaching Run. Each is distinct so that callers can map it
// to its own answer (503 with Retry-After for a full queue, 504 for a deadline).
var (
	ErrQueueFull = errors.New("batch: queue full")
	ErrDeadline  = errors.New("batch: deadline expired before the request ran")
	ErrClosed    = errors.New("batch: closed")
	// ErrWouldMissDeadline refuses, at once, a request whose expected wait (the batches ahead
	// of it times the recent run time) is longer than what is left of its deadline: it is a
	// kind of ErrQueueFull (the caller should retry later or elsewhere), not a timeout.
	ErrWouldMissDeadline = fmt.Errorf("%w: the expected wait outlasts the request's deadline", ErrQueueFull)
)

// Runner runs one batch: the session of a graph, or a stand-in in tests. Run must not keep
// its inputs: the batcher reuses the input buffers once the batch's rows are copied out.
type Runner interface {
	Run(inputs []ort.Tensor) ([]ort.Tensor, error)
	Inputs() []ort.TensorInfo
}

var _ Runner = (*ort.Session)(nil)

// ViewRunner is a Runner that can lend its outputs for the time of a call instead of copying
// them (ort.Session.RunView): the batcher then copies each request's rows straight into the
// request's Outputs, and a warm batch allocates nothing.
type ViewRunner interface {
	Runner
	RunView(inputs []ort.Tensor, use func(outputs []ort.Tensor) error) error
}

var _ ViewRunner = (*ort.Session)(nil)

// Outputs holds one request's outputs in buffers it keeps between uses (SubmitInto). The
// zero value is ready to use; one Outputs serves one request at a time, and the tensors of a
// request stay valid until the Outputs is given to the next.
type Outputs struct {
	tensors []ort.Tensor
	shapes  []int64
	f32     []float32
	i64     []int64
}

// Tensors are the last request's outputs, in graph order.
func (o *Outputs) Tensors() []ort.Tensor { return o.tensors }

// fill copies rows [lo, lo+rows) of every output (all of each output when whole) into o.
func (o *Outputs) fill(outputs []ort.Tensor, lo, rows int, whole bool) {
	var rank, nf, ni int
	for _, t := range outputs {
		rank += len(t.Shape)
		n := len(t.Float32) + len(t.Int64)
		if !whole {
			n = rowLen(t) * rows
		}
		if t.Float32 != nil {
			nf += n
		} else {
			ni += n
		}
	}
	if cap(o.tensors) < len(outputs) {
		o.tensors = make([]ort.Tensor, len(outputs))
	}
	o.tensors = o.tensors[:len(outputs)]
	shapes, f32, i64 := grow(o.shapes, rank), grow(o.f32, nf), grow(o.i64, ni)
	for i, t := range outputs {
		at := len(shapes)
		shapes = append(shapes, t.Shape...)
		cp := ort.Tensor{Name: t.Name, Shape: shapes[at:len(shapes):len(shapes)]}
		from, to := 0, len(t.Float32)+len(t.Int64)
		if !whole {
			cp.Shape[0] = int64(rows)
			from, to = lo*rowLen(t), (lo+rows)*rowLen(t)
		}
		if t.Float32 != nil {
			at := len(f32)
			f32 = append(f32, t.Float32[from:to]...)
			cp.Float32 = f32[at:len(f32):len(f32)]
		} else {
			at := len(i64)
			i64 = append(i64, t.Int64[from:to]...)
			cp.Int64 = i64[at:len(i64):len(i64)]
		}
		o.tensors[i] = cp
	}
	o.shapes, o.f32, o.i64 = shapes, f32, i64
}

// rowLen is the number of elements in one row (dimension 0) of t.
func rowLen(t ort.Tensor) int {
	n := 1
	for _, d := range t.Shape[1:] {
		n *= int(d)
	}
	return n
}

// Config sets how batches form. Zero fields take the documented defaults.
type Config struct {
	// MaxBatch is the most rows one Run gets (default 64). A request larger than MaxBatch is
	// refused.
	MaxBatch int
	// MaxWait is how long the first request of a forming batch waits for others (default
	// 500µs). Zero-length waits are allowed with NoWait.
	MaxWait time.Duration
	// NoWait runs whatever is queued at once, never waiting for more (MaxWait ignored).
	NoWait bool
	// QueueSize bounds the requests waiting to be batched (default 1024); beyond it Submit
	// answers ErrQueueFull at once.
	QueueSize int
	// Pad is the value that fills rows shorter than the longest of the batch, per input name
	// (default 0 for every input).
	Pad map[string]float64
	// Observe, when set, is told the size of every batch run, its run time and error.
	Observe func(rows int, d time.Duration, err error)
	// ObserveWait, when set, is told how long each request waited in the queue before its
	// batch ran (or before it was answered ErrDeadline there).
	ObserveWait func(d time.Duration)
}

func (c Config) withDefaults() Config {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 64
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 500 * time.Microsecond
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1024
	}
	return c
}

type request struct {
	ctx    context.Context
	queued time.Time
	inputs []ort.Tensor // owned copies, in graph order
	rows   int
	done   chan result
	// the copies' three arrays (shapes, float and integer data), kept with the request
	shapes []int64
	f32    []float32
	i64    []int64
	// out receives the request's rows of the outputs (SubmitInto's, or a new one for Submit)
	out *Outputs
}

// requests recycles requests between Submits: the struct, its done channel and the arrays
// its copies live in. A request goes back once Submit has its result: by then the loop has
// answered it and no longer reads it (it answers each request last thing).
var requests = sync.Pool{New: func() any { return &request{done: make(chan result, 1)} }}

// recycle returns r to the pool, its context and tensors dropped.
func recycle(r *request) {
	r.ctx, r.out = nil, nil
	clear(r.inputs)
	requests.Put(r)
}

type result struct {
	outputs []ort.Tensor
	err     error
}

// Batcher batches requests for one Runner. It is safe for concurrent use.
type Batcher struct {
	cfg    Config
	runner Runner
	inputs []ort.TensorInfo
	queue  chan *request
	stop   chan struct{}
	wg     sync.WaitGroup

	// waiting counts requests accepted and not yet answered (queued or running). The loop
	// decrements it as it answers, so that when it forms the next batch the count holds no
	// caller that has its answer but has not yet returned from Submit.
	waiting atomic.Int64
	// runNanos is a moving average of recent batch run times (0 until the first run): the
	// admission estimate of Submit.
	runNanos atomic.Int64

	// lent is the running batch, whose rows copyRows copies out (only the loop touches it);
	// copyRowsFn is the method value copyRows, made once so that passing it allocates nothing
	lent       []*request
	copyRowsFn func([]ort.Tensor) error

	closeOnce sync.Once
	mu        sync.RWMutex // Submit holds it shared while enqueueing; Close exclusively
	closed    bool

	f32 sync.Pool // *[]float32 batch buffers
	i64 sync.Pool // *[]int64 batch buffers
}

// New starts a batcher over r. Close stops it.
func New(r Runner, cfg Config) *Batcher {
	cfg = cfg.withDefaults()
	b := &Batcher{cfg: cfg, runner: r, inputs: r.Inputs(),
		queue: make(chan *request, cfg.QueueSize), stop: make(chan struct{})}
	b.copyRowsFn = b.copyRows
	b.wg.Add(1)
	go b.loop()
	return b
}

// QueueDepth is the number of requests waiting to be batched.
func (b *Batcher) QueueDepth() int { return len(b.queue) }

// ExpectedWait is how long a request submitted now can expect to wait before its batch has
// run: the batches that the requests already accepted fill, plus its own, at the recent run
// time; 0 before any batch has run.
func (b *Batcher) ExpectedWait() time.Duration {
	run := b.runNanos.Load()
	if run == 0 {
		return 0
	}
	batches := b.waiting.Load()/int64(b.cfg.MaxBatch) + 1
	return time.Duration(batches * run)
}

// Submit queues one request and waits for its outputs. Each input has the graph's rank with
// dimension 0 the request's rows (all inputs the same); other dimensions may be shorter than
// those of other requests and are padded (Config.Pad). The inputs are copied before queuing,
// so the caller may reuse its buffers as soon as Submit returns, or even before it answers.
// Outputs hold this request's rows only. A full queue answers ErrQueueFull at once, and so
// does a context whose deadline is nearer than ExpectedWait (ErrWouldMissDeadline: refused
// rather than left to time out in the queue) unless the context was admitted already
// (Admitted); a context that expires before the batch runs
// answers ErrDeadline (wrapping the context's error). Once a request's batch is running,
// Submit waits for it: a running native call is never abandoned.
func (b *Batcher) Submit(ctx context.Context, inputs []ort.Tensor) ([]ort.Tensor, error) {
	return b.SubmitInto(ctx, inputs, nil)
}

// SubmitInto is Submit answering into out's buffers (nil: new ones): the returned tensors are
// out's and stay valid until out is given to another SubmitInto. With a runner that lends its
// outputs (ViewRunner) and out warm from a request of the same shapes, a request allocates
// nothing.
func (b *Batcher) SubmitInto(ctx context.Context, inputs []ort.Tensor, out *Outputs) ([]ort.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDeadline, err)
	}
	if dl, ok := ctx.Deadline(); ok && ctx.Value(admittedKey{}) == nil {
		if wait := b.ExpectedWait(); wait > 0 && time.Until(dl) < wait {
			return nil, fmt.Errorf("%w (about %s, %s left)", ErrWouldMissDeadline, wait.Round(time.Microsecond), time.Until(dl).Round(time.Microsecond))
		}
	}
	req, err := b.prepare(ctx, inputs)
	if err != nil {
		recycle(req)
		return nil, err
	}
	req.out = out
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		recycle(req)
		return nil, ErrClosed
	}
	b.waiting.Add(1)
	req.queued = time.Now()
	select {
	case b.queue <- req:
		b.mu.RUnlock()
	default:
		b.waiting.Add(-1)
		b.mu.RUnlock()
		recycle(req)
		return nil, ErrQueueFull
	}
	res := <-req.done
	recycle(req)
	return res.outputs, res.err
}

// prepare checks and copies a request's inputs into graph order. The request (from the
// pool) comes back with an error too, for Submit to recycle.
func (b *Batcher) prepare(ctx context.Context, inputs []ort.Tensor) (*request, error) {
	// errors format copies of the inputs' names and shapes: anything of an input handed to fmt
	// would make every caller's input arrays escape to the heap
	req := requests.Get().(*request)
	req.ctx, req.rows = ctx, -1
	if cap(req.inputs) < len(b.inputs) {
		req.inputs = make([]ort.Tensor, len(b.inputs))
	}
	req.inputs = req.inputs[:len(b.inputs)]
	clear(req.inputs)
	if len(inputs) != len(b.inputs) {
		return req, fmt.Errorf("%w: batch: %d inputs, graph has %d", ort.ErrInput, len(inputs), len(b.inputs))
	}
	// the copies share three arrays (shapes, float and integer data), sized in a first pass
	var nShape, nF32, nI64 int
	for _, in := range inputs {
		nShape += len(in.Shape)
		if in.Float32 != nil {
			nF32 += len(in.Float32)
		} else {
			nI64 += len(in.Int64)
		}
	}
	shapes, f32, i64 := grow(req.shapes, nShape), grow(req.f32, nF32), grow(req.i64, nI64)
	req.shapes, req.f32, req.i64 = shapes, f32, i64
	for _, in := range inputs {
		idx := slices.IndexFunc(b.inputs, func(t ort.TensorInfo) bool { return t.Name == in.Name })
		if idx < 0 {
			return req, fmt.Errorf("%w: batch: unknown input %q", ort.ErrInput, strings.Clone(in.Name))
		}
		if req.inputs[idx].Shape != nil {
			return req, fmt.Errorf("%w: batch: input %q given twice", ort.ErrInput, strings.Clone(in.Name))
		}
		if len(in.Shape) == 0 || len(in.Shape) != len(b.inputs[idx].Shape) {
			return req, fmt.Errorf("%w: batch: input %q has shape %v, graph wants %s", ort.ErrInput, strings.Clone(in.Name), slices.Clone(in.Shape), b.inputs[idx])
		}
		if req.rows >= 0 && in.Shape[0] != int64(req.rows) {
			return req, fmt.Errorf("%w: batch: input %q has %d rows, other inputs %d", ort.ErrInput, strings.Clone(in.Name), in.Shape[0], req.rows)
		}
		req.rows = int(in.Shape[0])
		n := int64(1)
		for _, d := range in.Shape {
			if d < 0 || (d > 0 && n > (1<<31)/d) {
				return req, fmt.Errorf("%w: batch: input %q has shape %v", ort.ErrInput, strings.Clone(in.Name), slices.Clone(in.Shape))
			}
			n *= d
		}
		at := len(shapes)
		shapes = append(shapes, in.Shape...)
		cp := ort.Tensor{Name: b.inputs[idx].Name, Shape: shapes[at:len(shapes):len(shapes)]} // the graph's name: the caller's is not kept
		switch {
		case in.Float32 != nil && int64(len(in.Float32)) == n:
			at := len(f32)
			f32 = append(f32, in.Float32...)
			cp.Float32 = f32[at:len(f32):len(f32)]
		case in.Int64 != nil && int64(len(in.Int64)) == n:
			at := len(i64)
			i64 = append(i64, in.Int64...)
			cp.Int64 = i64[at:len(i64):len(i64)]
		default:
			return req, fmt.Errorf("%w: batch: input %q data does not match shape %v", ort.ErrInput, strings.Clone(in.Name), slices.Clone(in.Shape))
		}
		req.inputs[idx] = cp
	}
	if req.rows < 1 || req.rows > b.cfg.MaxBatch {
		return req, fmt.Errorf("%w: batch: %d rows; a request has 1 to %d", ort.ErrInput, req.rows, b.cfg.MaxBatch)
	}
	return req, nil
}

func (b *Batcher) loop() {
	defer b.wg.Done()
	var pending *request // a request that did not fit the previous batch
	var wait *time.Timer // MaxWait's timer, made once and armed only when a batch waits
	batch := make([]*request, 0, 8)
	for {
		var first *request
		if pending != nil {
			first, pending = pending, nil
		} else {
			select {
			case first = <-b.queue:
			case <-b.stop:
				// Accepted requests still queued run before the loop ends.
				select {
				case first = <-b.queue:
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
		rows := first.rows
		var timer <-chan time.Time // armed at the first wait, MaxWait from then
		armed := false
	collect:
		for rows < b.cfg.MaxBatch {
			// Every caller accepted and not yet answered is in this batch: waiting longer
			// cannot add anyone who is already here, so a lone caller does not pay MaxWait.
			if int64(len(batch)) >= b.waiting.Load() {
				break
			}
			var r *request
			if b.cfg.NoWait {
				select {
				case r = <-b.queue:
				default:
					break collect
				}
			} else {
				if !armed {
					if wait == nil {
						wait = time.NewTimer(b.cfg.MaxWait)
					} else {
						wait.Reset(b.cfg.MaxWait)
					}
					timer, armed = wait.C, true
				}
				select {
				case r = <-b.queue:
				case <-timer:
					armed = false // fired: Reset rearms it
					break collect
				}
			}
			if rows+r.rows > b.cfg.MaxBatch {
				pending = r
				break
			}
			batch = append(batch, r)
			rows += r.rows
		}
		if armed {
			wait.Stop() // Go 1.23+: no stale tick survives Stop for the next Reset
		}
		b.run(batch)
		clear(batch) // the answered requests are not kept alive by the reused slice
	}
}

func (b *Batcher) run(batch []*request) {
	// Requests whose deadline passed while queued are answered now and never run.
	live := batch[:0]
	now := time.Now()
	for _, r := range batch {
		if b.cfg.ObserveWait != nil {
			b.cfg.ObserveWait(now.Sub(r.queued))
		}
		if err := r.ctx.Err(); err != nil {
			b.answer(r, result{err: fmt.Errorf("%w: %w", ErrDeadline, err)})
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	inputs, release := b.assemble(live)
	start := time.Now()
	var err error
	b.lent = live
	if vr, ok := b.runner.(ViewRunner); ok {
		err = vr.RunView(inputs, b.copyRowsFn)
	} else {
		var outputs []ort.Tensor
		if outputs, err = b.runner.Run(inputs); err == nil {
			err = b.copyRows(outputs)
		}
	}
	b.lent = nil
	took := time.Since(start)
	if old := b.runNanos.Load(); old == 0 {
		b.runNanos.Store(int64(took))
	} else {
		b.runNanos.Store((3*old + int64(took)) / 4) // only the loop goroutine writes it
	}
	if b.cfg.Observe != nil {
		b.cfg.Observe(totalRows(live), took, err)
	}
	release()
	if err != nil {
		for _, r := range live {
			b.answer(r, result{err: err})
		}
		return
	}
	for _, r := range live {
		b.answer(r, result{outputs: r.out.tensors})
	}
}

// copyRows copies each request of the running batch its rows of every output, lent or
// returned, into the request's Outputs (a batch of one whose outputs do not lead with its rows
// gets them whole; a batch of several cannot be split then and gets an error).
func (b *Batcher) copyRows(outputs []ort.Tensor) error {
	rs := b.lent
	whole := len(rs) == 1 && !rowsFirst(outputs, rs[0].rows)
	if n := totalRows(rs); !whole {
		for _, o := range outputs {
			if len(o.Shape) == 0 || o.Shape[0] != int64(n) {
				return fmt.Errorf("batch: output %q has shape %v: a batch of %d rows needs them first", strings.Clone(o.Name), slices.Clone(o.Shape), n)
			}
		}
	}
	off := 0
	for _, r := range rs {
		if r.out == nil {
			r.out = new(Outputs)
		}
		r.out.fill(outputs, off, r.rows, whole)
		off += r.rows
	}
	return nil
}

// answer gives r its result and stops counting it as waiting.
func (b *Batcher) answer(r *request, res result) {
	b.waiting.Add(-1)
	r.done <- res
}

func totalRows(rs []*request) int {
	n := 0
	for _, r := range rs {
		n += r.rows
	}
	return n
}

// assemble concatenates the requests' inputs along dimension 0, padding the other dimensions
// to the batch's longest. Buffers come from pools; release returns them.
func (b *Batcher) assemble(rs []*request) ([]ort.Tensor, func()) {
	if len(rs) == 1 {
		return rs[0].inputs, func() {} // a batch of one runs on its request's copies
	}
	rows := totalRows(rs)
	out := make([]ort.Tensor, len(b.inputs))
	f32s := make([]*[]float32, 0, len(b.inputs))
	i64s := make([]*[]int64, 0, len(b.inputs))
	rank := 0
	for _, info := range b.inputs {
		rank += len(info.Shape)
	}
	shapes := make([]int64, rank) // every input's batch shape, in one array
	for i, info := range b.inputs {
		shape := shapes[:len(info.Shape):len(info.Shape)]
		shapes = shapes[len(info.Shape):]
		shape[0] = int64(rows)
		for _, r := range rs {
			for d := 1; d < len(shape); d++ {
				shape[d] = max(shape[d], r.inputs[i].Shape[d])
			}
		}
		rowLen := int64(1)
		for _, d := range shape[1:] {
			rowLen *= d
		}
		n := int(rowLen) * rows
		pad := b.cfg.Pad[info.Name]
		t := ort.Tensor{Name: info.Name, Shape: shape}
		if rs[0].inputs[i].Float32 != nil {
			buf := getBuf[float32](&b.f32, n)
			f32s = append(f32s, buf)
			t.Float32 = (*buf)[:n]
			fillRows(t.Float32, shape, rs, i, f32Of, float32(pad))
		} else {
			buf := getBuf[int64](&b.i64, n)
			i64s = append(i64s, buf)
			t.Int64 = (*buf)[:n]
			fillRows(t.Int64, shape, rs, i, i64Of, int64(pad))
		}
		out[i] = t
	}
	return out, func() {
		for _, p := range f32s {
			b.f32.Put(p)
		}
		for _, p := range i64s {
			b.i64.Put(p)
		}
	}
}

// grow returns b emptied with room for n, reallocating only when its capacity is short.
func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, 0, n)
	}
	return b[:0]
}

func getBuf[T any](p *sync.Pool, n int) *[]T {
	if v, ok := p.Get().(*[]T); ok && cap(*v) >= n {
		return v
	}
	s := make([]T, n)
	return &s
}

func f32Of(t ort.Tensor) []float32 { return t.Float32 }
func i64Of(t ort.Tensor) []int64   { return t.Int64 }

// fillRows copies each request's rows of input `input` (its data by data) into dst (shape =
// batch shape), padding with pad.
func fillRows[T any](dst []T, shape []int64, rs []*request, input int, data func(ort.Tensor) []T, pad T) {
	for i := range dst {
		dst[i] = pad
	}
	off := 0
	for _, r := range rs {
		src, ss := data(r.inputs[input]), r.inputs[input].Shape
		if slices.Equal(ss[1:], shape[1:]) {
			copy(dst[off:], src)
			off += len(src)
			continue
		}
		// copy each innermost run into its place in the padded layout
		copyPadded(dst[off:], shape[1:], src, ss)
		rowLen := 1
		for _, d := range shape[1:] {
			rowLen *= int(d)
		}
		off += rowLen * int(ss[0])
	}
}

// copyPadded copies src (shape ss, ss[0] rows) into dst laid out with row shape inner.
func copyPadded[T any](dst []T, inner []int64, src []T, ss []int64) {
	rank := len(ss)
	// strides of the destination row layout
	dstStride := make([]int, rank)
	srcStride := make([]int, rank)
	dstStride[rank-1], srcStride[rank-1] = 1, 1
	for d := rank - 2; d >= 0; d-- {
		dstStride[d] = dstStride[d+1] * int(inner[d])
		srcStride[d] = srcStride[d+1] * int(ss[d+1])
	}
	last := int(ss[rank-1])
	idx := make([]int, rank-1) // index over all dims but the last
	for {
		so, do := 0, 0
		for d := 0; d < rank-1; d++ {
			so += idx[d] * srcStride[d]
			do += idx[d] * dstStride[d]
		}
		copy(dst[do:do+last], src[so:so+last])
		d := rank - 2
		for ; d >= 0; d-- {
			idx[d]++
			if idx[d] < int(ss[d]) {
				break
			}
			idx[d] = 0
		}
		if d < 0 {
			return
		}
	}
}

// rowsFirst reports whether every output has rows as its first dimension.
func rowsFirst(outputs []ort.Tensor, rows int) bool {
	for _, o := range outputs {
		if len(o.Shape) == 0 || o.Shape[0] != int64(rows) {
			return false
		}
	}
	return true
}

// Close stops taking requests (Submit answers ErrClosed), runs every request already
// accepted, and returns when the last has its answer. It is idempotent.
func (b *Batcher) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.stop)
		b.wg.Wait()
	})
	return nil
}

type admittedKey struct{}

// Admitted marks ctx as admitted by a caller that judged the whole of its work against its
// deadline once, at its start (recommend.Engine.Recommend sums the expected waits of every
// graph it passes): Submit then no longer refuses it by ExpectedWait halfway through, so a
// request is refused at once or not at all, and one that runs late meets its deadline
// (ErrDeadline) instead of a refusal after part of its work.
func Admitted(ctx context.Context) context.Context {
	return context.WithValue(ctx, admittedKey{}, true)
}

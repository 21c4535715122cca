package ort

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"

	onnx "github.com/yalue/onnxruntime_go"
)

// Reuse of the tensors handed to ONNX Runtime. onnxruntime_go makes a Go tensor (a shape copy,
// a value, a C array) for every input and output of every run; a graph served by the batcher
// runs with the same few input shapes again and again. A tensorSet keeps one run's input
// tensors, backed by Go slices the session owns, and, once a run with those shapes has shown
// what the outputs' shapes are, output tensors of those shapes for ONNX Runtime to write into.
// Idle sets wait in a free list by the hash of their input shapes; a run takes one (or makes
// one), so concurrent runs never share a set. The idle sets are bounded in bytes per session
// (maxIdleSetBytes) and count per shape (maxIdleSetsPerShape); beyond that a set is released.
// Copying the inputs in costs a memory copy per run (the engine's inputs are a few hundred
// kilobytes at most), against a dozen allocations per tensor.
//
// On the CPU provider a set whose outputs are known also holds an I/O binding of its input and
// output tensors, made once: its runs go through RunWithBinding, which allocates nothing in Go
// (onnxruntime_go's Run makes two C arrays and a handle per tensor on every call). ONNX Runtime
// binds a CPU tensor to a CPU session by reference, so the data copied into the kept input
// tensors before each run is what that run reads. Other providers copy a bound input to the
// device when it is bound, not when the graph runs, so their sets keep using Run.

const (
	maxIdleSetBytes     = 16 << 20
	maxIdleSetsPerShape = 4
)

// graphOrder is a run's inputs in graph order: graph input i is in[at[i]]. Runs index the
// caller's inputs through it instead of copying them into a graph-ordered slice, which would
// make the caller's input arrays escape to the heap.
type graphOrder struct {
	in []Tensor
	at []int
}

func (o graphOrder) len() int            { return len(o.at) }
func (o graphOrder) tensor(i int) Tensor { return o.in[o.at[i]] }

// tensorSet is a run's input tensors (and, once known, output tensors) kept for reuse.
type tensorSet struct {
	key    uint64
	shapes [][]int64 // the inputs' shapes, graph order
	ins    []onnx.Value
	outs   []onnx.Value // nil until a run with these inputs showed the output shapes
	// outShapes are the outs' shapes
	outShapes [][]int64
	// views are the outs as tensors over their data (RunView lends them)
	views []Tensor
	bytes int64
	// binding binds ins and outs (CPU sessions with known outputs; nil otherwise)
	binding *onnx.IoBinding
}

var shapeSeed = maphash.MakeSeed()

// shapeKey hashes the inputs' shapes and element types.
func shapeKey(ordered graphOrder) uint64 {
	var h maphash.Hash
	h.SetSeed(shapeSeed)
	var b [8]byte
	for i := range ordered.len() {
		t := ordered.tensor(i)
		b[0] = 'f'
		if t.Int64 != nil {
			b[0] = 'i'
		}
		h.Write(b[:1])
		for _, d := range t.Shape {
			for k := range 8 {
				b[k] = byte(uint64(d) >> (8 * k))
			}
			h.Write(b[:])
		}
		h.Write([]byte{0xff})
	}
	return h.Sum64()
}

// matches reports whether the set was made for exactly these inputs' shapes and types.
func (ts *tensorSet) matches(ordered graphOrder) bool {
	if len(ts.shapes) != ordered.len() {
		return false
	}
	for i := range ordered.len() {
		t := ordered.tensor(i)
		if !slices.Equal(ts.shapes[i], t.Shape) {
			return false
		}
		if _, isF := ts.ins[i].(*onnx.Tensor[float32]); isF != (t.Float32 != nil) {
			return false
		}
	}
	return true
}

// takeSet returns a set for the inputs' shapes, idle or new, with the inputs copied in.
func (s *Session) takeSet(ordered graphOrder) (*tensorSet, error) {
	key := shapeKey(ordered)
	var ts *tensorSet
	s.setsMu.Lock()
	if idle := s.sets[key]; len(idle) > 0 {
		if last := idle[len(idle)-1]; last.matches(ordered) {
			ts = last
			s.sets[key] = idle[:len(idle)-1]
			s.setBytes -= ts.bytes
		}
	}
	s.setsMu.Unlock()
	if ts == nil {
		var err error
		if ts, err = s.newSet(key, ordered); err != nil {
			return nil, err
		}
		return ts, nil
	}
	for i := range ordered.len() {
		t := ordered.tensor(i)
		switch x := ts.ins[i].(type) {
		case *onnx.Tensor[float32]:
			copy(x.GetData(), t.Float32)
		case *onnx.Tensor[int64]:
			copy(x.GetData(), t.Int64)
		}
	}
	return ts, nil
}

// newSet makes input tensors of the inputs' shapes, holding copies of their data.
func (s *Session) newSet(key uint64, ordered graphOrder) (*tensorSet, error) {
	ts := &tensorSet{key: key, shapes: make([][]int64, ordered.len()), ins: make([]onnx.Value, ordered.len())}
	for i := range ordered.len() {
		in := ordered.tensor(i)
		ts.shapes[i] = slices.Clone(in.Shape)
		var v onnx.Value
		var err error
		if in.Float32 != nil {
			v, err = onnx.NewTensor(onnx.Shape(ts.shapes[i]), slices.Clone(in.Float32))
			ts.bytes += 4 * int64(len(in.Float32))
		} else {
			v, err = onnx.NewTensor(onnx.Shape(ts.shapes[i]), slices.Clone(in.Int64))
			ts.bytes += 8 * int64(len(in.Int64))
		}
		if err != nil {
			ts.destroy()
			return nil, fmt.Errorf("ort: run %s: input %q: %w", s.name, strings.Clone(in.Name), err)
		}
		ts.ins[i] = v
	}
	return ts, nil
}

// bindOutputs makes, for the next runs of this set, output tensors of the shapes and types
// ONNX Runtime just produced; any failure leaves the set unbound (it runs as before).
func (ts *tensorSet) bindOutputs(produced []onnx.Value, shapes [][]int64, info []TensorInfo) {
	outs := make([]onnx.Value, len(produced))
	views := make([]Tensor, len(produced))
	var bytes int64
	for i, v := range produced {
		var err error
		views[i] = Tensor{Name: info[i].Name, Shape: shapes[i]}
		switch x := v.(type) {
		case *onnx.Tensor[float32]:
			var t *onnx.Tensor[float32]
			t, err = onnx.NewEmptyTensor[float32](x.GetShape())
			if err == nil {
				outs[i], views[i].Float32 = t, t.GetData()
			}
			bytes += 4 * int64(len(x.GetData()))
		case *onnx.Tensor[int64]:
			var t *onnx.Tensor[int64]
			t, err = onnx.NewEmptyTensor[int64](x.GetShape())
			if err == nil {
				outs[i], views[i].Int64 = t, t.GetData()
			}
			bytes += 8 * int64(len(x.GetData()))
		default:
			err = fmt.Errorf("element type not kept")
		}
		if err != nil {
			destroyValues(outs)
			return
		}
	}
	ts.outs, ts.outShapes, ts.views = outs, shapes, views
	ts.bytes += bytes
}

// bind makes the set's I/O binding (see the file comment); a failure leaves it unbound.
func (ts *tensorSet) bind(sess *onnx.DynamicAdvancedSession, inputs, outputs []TensorInfo) {
	if ts.outs == nil || ts.binding != nil {
		return
	}
	b, err := sess.CreateIoBinding()
	if err != nil {
		return
	}
	for i, v := range ts.ins {
		if err == nil {
			err = b.BindInput(inputs[i].Name, v)
		}
	}
	for i, v := range ts.outs {
		if err == nil {
			err = b.BindOutput(outputs[i].Name, v)
		}
	}
	if err != nil {
		b.Destroy()
		return
	}
	ts.binding = b
}

// putSet returns a set to the idle list, or releases it past the bounds.
func (s *Session) putSet(ts *tensorSet) {
	s.setsMu.Lock()
	if s.sets == nil {
		s.sets = map[uint64][]*tensorSet{}
	}
	if len(s.sets[ts.key]) < maxIdleSetsPerShape && s.setBytes+ts.bytes <= maxIdleSetBytes {
		s.sets[ts.key] = append(s.sets[ts.key], ts)
		s.setBytes += ts.bytes
		ts = nil
	}
	s.setsMu.Unlock()
	if ts != nil {
		ts.destroy()
	}
}

// dropSets releases every idle set (Close).
func (s *Session) dropSets() {
	s.setsMu.Lock()
	defer s.setsMu.Unlock()
	for _, idle := range s.sets {
		for _, ts := range idle {
			ts.destroy()
		}
	}
	s.sets, s.setBytes = nil, 0
}

func (ts *tensorSet) destroy() {
	if ts.binding != nil {
		ts.binding.Destroy()
		ts.binding = nil
	}
	destroyValues(ts.ins)
	destroyValues(ts.outs)
	ts.ins, ts.outs, ts.outShapes, ts.views = nil, nil, nil, nil
}

// shapeOf is a value's shape (nil for values that are not tensors the engine reads).
func shapeOf(v onnx.Value) []int64 {
	switch x := v.(type) {
	case *onnx.Tensor[float32]:
		return x.GetShape()
	case *onnx.Tensor[int64]:
		return x.GetShape()
	}
	return nil
}

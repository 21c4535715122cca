package ort

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	onnx "github.com/yalue/onnxruntime_go"
)

// DType is a tensor element type the engine exchanges with its graphs.
type DType string

const (
	Float32 DType = "float32"
	Int64   DType = "int64"
)

// ErrInput is wrapped by every error about a Run input (unknown, missing or duplicate name,
// wrong dtype, shape or data length). Such errors never reach ONNX Runtime.
var ErrInput = errors.New("ort: bad input")

// TensorInfo describes one input or output of a graph. Symbolic dimensions are -1.
type TensorInfo struct {
	Name  string
	DType DType // empty for element types the engine does not exchange
	Shape []int64
}

func (t TensorInfo) String() string {
	dims := make([]string, len(t.Shape))
	for i, d := range t.Shape {
		if d < 0 {
			dims[i] = "?"
		} else {
			dims[i] = fmt.Sprint(d)
		}
	}
	return fmt.Sprintf("%s %s[%s]", t.Name, t.DType, strings.Join(dims, ","))
}

// Tensor is a named, host-memory tensor. Exactly one of Float32 and Int64 holds the data, in
// row-major order; its length must equal the product of Shape.
type Tensor struct {
	Name    string
	Shape   []int64
	Float32 []float32
	Int64   []int64
}

// DType is the element type held by t.
func (t Tensor) DType() DType {
	switch {
	case t.Float32 != nil:
		return Float32
	case t.Int64 != nil:
		return Int64
	}
	return ""
}

func (t Tensor) len() int {
	if t.Float32 != nil {
		return len(t.Float32)
	}
	return len(t.Int64)
}

// SessionOptions configure one session. The zero value uses the Runtime's settings.
type SessionOptions struct {
	// Name labels the session in errors and logs; empty means the file name or "bytes".
	Name string
}

// Session is one loaded graph. Run is safe for concurrent use (ONNX Runtime sessions are);
// Close waits for running calls to return and is idempotent.
type Session struct {
	rt       *Runtime
	name     string
	provider Provider
	inputs   []TensorInfo
	outputs  []TensorInfo

	mu     sync.RWMutex // Run holds it shared, Close exclusively
	closed bool
	sess   *onnx.DynamicAdvancedSession

	setsMu   sync.Mutex
	sets     map[uint64][]*tensorSet // idle tensor sets by input-shape key (tensors.go)
	setBytes int64                   // bytes held by the idle sets
}

// NewSession loads a graph from an .onnx file (external data resolved relative to it).
func (r *Runtime) NewSession(path string, o SessionOptions) (*Session, error) {
	if o.Name == "" {
		o.Name = path
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("ort: load %s: %w", o.Name, err)
	}
	return r.newSession(o.Name, func(in, out []string, so *onnx.SessionOptions) (*onnx.DynamicAdvancedSession, error) {
		return onnx.NewDynamicAdvancedSession(path, in, out, so)
	}, func(so *onnx.SessionOptions) ([]onnx.InputOutputInfo, []onnx.InputOutputInfo, error) {
		return onnx.GetInputOutputInfoWithOptions(path, so)
	})
}

// NewSessionFromBytes loads a graph held in memory (no external data).
func (r *Runtime) NewSessionFromBytes(model []byte, o SessionOptions) (*Session, error) {
	if o.Name == "" {
		o.Name = "bytes"
	}
	if len(model) == 0 {
		return nil, fmt.Errorf("ort: load %s: empty model", o.Name)
	}
	return r.newSession(o.Name, func(in, out []string, so *onnx.SessionOptions) (*onnx.DynamicAdvancedSession, error) {
		return onnx.NewDynamicAdvancedSessionWithONNXData(model, in, out, so)
	}, func(*onnx.SessionOptions) ([]onnx.InputOutputInfo, []onnx.InputOutputInfo, error) {
		return onnx.GetInputOutputInfoWithONNXData(model)
	})
}

func (r *Runtime) newSession(name string,
	create func(in, out []string, so *onnx.SessionOptions) (*onnx.DynamicAdvancedSession, error),
	info func(so *onnx.SessionOptions) ([]onnx.InputOutputInfo, []onnx.InputOutputInfo, error),
) (*Session, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	// Reading the I/O description needs a session of its own; a CPU one without graph
	// optimisation is the cheapest.
	iso, err := onnx.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ort: load %s: %w", name, err)
	}
	err = iso.SetGraphOptimizationLevel(onnx.GraphOptimizationLevelDisableAll)
	var ins, outs []onnx.InputOutputInfo
	if err == nil {
		ins, outs, err = info(iso)
	}
	iso.Destroy()
	if err != nil {
		return nil, fmt.Errorf("ort: load %s: %w", name, err)
	}
	s := &Session{rt: r, name: name, provider: r.provider}
	for _, i := range ins {
		s.inputs = append(s.inputs, toInfo(i))
	}
	for _, o := range outs {
		s.outputs = append(s.outputs, toInfo(o))
	}
	so, err := newSessionOptions(r.opts, r.provider, r.opts.CUDADevice)
	if err != nil {
		return nil, fmt.Errorf("ort: load %s: %w", name, err)
	}
	defer so.Destroy()
	sess, err := create(names(s.inputs), names(s.outputs), so)
	if err != nil {
		return nil, fmt.Errorf("ort: load %s: %w", name, err)
	}
	s.sess = sess
	if err := r.track(s); err != nil {
		return nil, errors.Join(err, sess.Destroy())
	}
	return s, nil
}

func toInfo(i onnx.InputOutputInfo) TensorInfo {
	t := TensorInfo{Name: i.Name, Shape: append([]int64(nil), i.Dimensions...)}
	switch i.DataType {
	case onnx.TensorElementDataTypeFloat:
		t.DType = Float32
	case onnx.TensorElementDataTypeInt64:
		t.DType = Int64
	}
	return t
}

func names(ts []TensorInfo) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

// Name labels the session.
func (s *Session) Name() string { return s.name }

// Provider is the execution provider the session was created for.
func (s *Session) Provider() Provider { return s.provider }

// Inputs describes the graph's inputs in graph order.
func (s *Session) Inputs() []TensorInfo { return s.inputs }

// Outputs describes the graph's outputs in graph order.
func (s *Session) Outputs() []TensorInfo { return s.outputs }

// Check validates inputs against the graph without running it: every graph input given
// exactly once by name, with the graph's dtype and rank, fixed dimensions equal, no negative
// dimension, and data length equal to the shape's element count. It returns the inputs in
// graph order. Errors wrap ErrInput and name the input.
func (s *Session) Check(inputs []Tensor) ([]Tensor, error) {
	ordered := make([]Tensor, len(s.inputs))
	if err := s.check(inputs, ordered); err != nil {
		return nil, err
	}
	return ordered, nil
}

// check is Check writing the ordered inputs into ordered (len(s.inputs) long).
func (s *Session) check(inputs, ordered []Tensor) error {
	seen := make([]bool, len(s.inputs))
	for _, in := range inputs {
		idx := -1
		for i, info := range s.inputs {
			if info.Name == in.Name {
				idx = i
				break
			}
		}
		if idx < 0 {
			return fmt.Errorf("%w: %s: unknown input %q (graph inputs: %s)", ErrInput, s.name, in.Name, strings.Join(names(s.inputs), ", "))
		}
		if seen[idx] {
			return fmt.Errorf("%w: %s: input %q given twice", ErrInput, s.name, in.Name)
		}
		seen[idx] = true
		info := s.inputs[idx]
		if in.Float32 != nil && in.Int64 != nil {
			return fmt.Errorf("%w: %s: input %q holds both float32 and int64 data", ErrInput, s.name, in.Name)
		}
		if dt := in.DType(); dt != info.DType {
			if dt == "" {
				dt = "no data"
			}
			return fmt.Errorf("%w: %s: input %q has dtype %s, graph wants %s", ErrInput, s.name, in.Name, dt, info.DType)
		}
		if len(in.Shape) != len(info.Shape) {
			return fmt.Errorf("%w: %s: input %q has rank %d (shape %v), graph wants %s", ErrInput, s.name, in.Name, len(in.Shape), in.Shape, info)
		}
		n := int64(1)
		for d, v := range in.Shape {
			if v < 0 {
				return fmt.Errorf("%w: %s: input %q has negative dimension %d", ErrInput, s.name, in.Name, v)
			}
			if want := info.Shape[d]; want >= 0 && v != want {
				return fmt.Errorf("%w: %s: input %q has shape %v, graph wants %s", ErrInput, s.name, in.Name, in.Shape, info)
			}
			if v > 0 && n > (1<<40)/v {
				return fmt.Errorf("%w: %s: input %q shape %v is too large", ErrInput, s.name, in.Name, in.Shape)
			}
			n *= v
		}
		if int64(in.len()) != n {
			return fmt.Errorf("%w: %s: input %q has %d elements, shape %v needs %d", ErrInput, s.name, in.Name, in.len(), in.Shape, n)
		}
		ordered[idx] = in
	}
	for i, ok := range seen {
		if !ok {
			return fmt.Errorf("%w: %s: missing input %q (%s)", ErrInput, s.name, s.inputs[i].Name, s.inputs[i])
		}
	}
	return nil
}

// Run checks the inputs (see Check) and runs the graph. Outputs come back in graph order as
// Go-owned tensors (one shape array and one data slice each); every tensor ONNX Runtime
// allocated has been released by then.
//
// The tensors handed to ONNX Runtime are reused across runs of the same input shapes (see
// tensorSet): inputs are copied into kept tensors, and outputs, once their shapes for those
// inputs are known, are written by ONNX Runtime into kept tensors and copied out. A run then
// allocates its results and little else.
func (s *Session) Run(inputs []Tensor) ([]Tensor, error) {
	var onStack [8]Tensor // the engine's graphs have at most 7 inputs
	ordered := onStack[:0]
	if len(s.inputs) <= len(onStack) {
		ordered = onStack[:len(s.inputs)]
	} else {
		ordered = make([]Tensor, len(s.inputs))
	}
	err := s.check(inputs, ordered)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("ort: run %s: %w", s.name, ErrClosed)
	}
	set, err := s.takeSet(ordered)
	if err != nil {
		return nil, err
	}
	bound := set.outs != nil
	outs := set.outs
	if !bound {
		outs = make([]onnx.Value, len(s.outputs))
	}
	if set.binding != nil {
		err = s.sess.RunWithBinding(set.binding)
	} else {
		err = s.sess.Run(set.ins, outs)
	}
	if err != nil {
		if !bound {
			destroyValues(outs)
		}
		set.destroy()
		return nil, fmt.Errorf("ort: run %s: %w", s.name, err)
	}
	shapes := set.outShapes
	if !bound {
		shapes = make([][]int64, len(outs))
		for i, v := range outs {
			shapes[i] = shapeOf(v)
		}
	}
	result, err := s.results(outs, shapes)
	if !bound {
		// ONNX Runtime allocated these: keep Go-backed tensors of their shapes for next time
		if err == nil {
			set.bindOutputs(outs, shapes)
		}
		destroyValues(outs)
	}
	if err != nil {
		set.destroy()
		return nil, err
	}
	if s.provider == ProviderCPU {
		set.bind(s.sess, s.inputs, s.outputs)
	}
	s.putSet(set)
	return result, nil
}

// results copies outputs (of the given shapes) into Go-owned tensors: the shapes in one
// array, a data slice each.
func (s *Session) results(outs []onnx.Value, outShapes [][]int64) ([]Tensor, error) {
	rank := 0
	for _, sh := range outShapes {
		rank += len(sh)
	}
	shapes := make([]int64, 0, rank)
	result := make([]Tensor, len(outs))
	for i, v := range outs {
		at := len(shapes)
		shapes = append(shapes, outShapes[i]...)
		t := Tensor{Name: s.outputs[i].Name, Shape: shapes[at:len(shapes):len(shapes)]}
		switch x := v.(type) {
		case *onnx.Tensor[float32]:
			t.Float32 = append(make([]float32, 0, len(x.GetData())), x.GetData()...)
		case *onnx.Tensor[int64]:
			t.Int64 = append(make([]int64, 0, len(x.GetData())), x.GetData()...)
		default:
			return nil, fmt.Errorf("ort: run %s: output %q has an element type the engine does not read", s.name, s.outputs[i].Name)
		}
		result[i] = t
	}
	return result, nil
}

func destroyValues(vs []onnx.Value) {
	for _, v := range vs {
		if v != nil {
			v.Destroy()
		}
	}
}

// Close releases the session once running calls have returned. It is idempotent.
func (s *Session) Close() error {
	s.rt.untrack(s)
	return s.close()
}

func (s *Session) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.dropSets()
	if err := s.sess.Destroy(); err != nil {
		return fmt.Errorf("ort: close %s: %w", s.name, err)
	}
	return nil
}

package ort

import (
	"errors"
	"fmt"
	"os"
	"slices"
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
	at := make([]int, len(s.inputs))
	if err := s.check(inputs, at); err != nil {
		return nil, err
	}
	ordered := make([]Tensor, len(s.inputs))
	for i, j := range at {
		ordered[i] = inputs[j]
	}
	return ordered, nil
}

// check is Check writing, for each graph input, the index of the input that gives it into at
// (len(s.inputs) long). It stores no input anywhere: a tensor stored through a slice it was
// given would make every caller's input arrays escape to the heap.
func (s *Session) check(inputs []Tensor, at []int) error {
	// Errors format copies of the inputs' names and shapes: anything of an input handed to fmt
	// would make every caller's input arrays (shapes, data) escape to the heap.
	seen := make([]bool, len(s.inputs))
	for j, in := range inputs {
		idx := -1
		for i, info := range s.inputs {
			if info.Name == in.Name {
				idx = i
				break
			}
		}
		if idx < 0 {
			return fmt.Errorf("%w: %s: unknown input %q (graph inputs: %s)", ErrInput, s.name, strings.Clone(in.Name), strings.Join(names(s.inputs), ", "))
		}
		if seen[idx] {
			return fmt.Errorf("%w: %s: input %q given twice", ErrInput, s.name, strings.Clone(in.Name))
		}
		seen[idx] = true
		info := s.inputs[idx]
		if in.Float32 != nil && in.Int64 != nil {
			return fmt.Errorf("%w: %s: input %q holds both float32 and int64 data", ErrInput, s.name, strings.Clone(in.Name))
		}
		if dt := in.DType(); dt != info.DType {
			if dt == "" {
				dt = "no data"
			}
			return fmt.Errorf("%w: %s: input %q has dtype %s, graph wants %s", ErrInput, s.name, strings.Clone(in.Name), dt, info.DType)
		}
		if len(in.Shape) != len(info.Shape) {
			return fmt.Errorf("%w: %s: input %q has rank %d (shape %v), graph wants %s", ErrInput, s.name, strings.Clone(in.Name), len(in.Shape), slices.Clone(in.Shape), info)
		}
		n := int64(1)
		for d, v := range in.Shape {
			if v < 0 {
				return fmt.Errorf("%w: %s: input %q has negative dimension %d", ErrInput, s.name, strings.Clone(in.Name), v)
			}
			if want := info.Shape[d]; want >= 0 && v != want {
				return fmt.Errorf("%w: %s: input %q has shape %v, graph wants %s", ErrInput, s.name, strings.Clone(in.Name), slices.Clone(in.Shape), info)
			}
			if v > 0 && n > (1<<40)/v {
				return fmt.Errorf("%w: %s: input %q shape %v is too large", ErrInput, s.name, strings.Clone(in.Name), slices.Clone(in.Shape))
			}
			n *= v
		}
		if int64(in.len()) != n {
			return fmt.Errorf("%w: %s: input %q has %d elements, shape %v needs %d", ErrInput, s.name, strings.Clone(in.Name), in.len(), slices.Clone(in.Shape), n)
		}
		at[idx] = j
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
	var result []Tensor
	err := s.RunView(inputs, func(outputs []Tensor) error {
		result = CopyTensors(outputs)
		return nil
	})
	return result, err
}

// RunView is Run lending the outputs instead of copying them: use gets them, in graph order,
// valid only until it returns (they are the tensors ONNX Runtime wrote, kept for the next run
// of these input shapes), and RunView returns use's error. A warm run on the CPU provider
// allocates nothing in Go; the batcher copies each request's rows from the lent outputs
// straight into the request's own buffers. use must not keep the tensors or their data.
func (s *Session) RunView(inputs []Tensor, use func(outputs []Tensor) error) error {
	var onStack [8]int // the engine's graphs have at most 7 inputs
	at := onStack[:0]
	if len(s.inputs) <= len(onStack) {
		at = onStack[:len(s.inputs)]
	} else {
		at = make([]int, len(s.inputs))
	}
	err := s.check(inputs, at)
	if err != nil {
		return err
	}
	ordered := graphOrder{inputs, at}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("ort: run %s: %w", s.name, ErrClosed)
	}
	set, err := s.takeSet(ordered)
	if err != nil {
		return err
	}
	if set.outs != nil {
		// the kept outputs: bound, or handed to Run to write into
		if set.binding != nil {
			err = s.sess.RunWithBinding(set.binding)
		} else {
			err = s.sess.Run(set.ins, set.outs)
		}
		if err != nil {
			set.destroy()
			return fmt.Errorf("ort: run %s: %w", s.name, err)
		}
		err = use(set.views)
		s.keep(set)
		return err
	}
	// the first run of these shapes: ONNX Runtime allocates the outputs, and tensors of their
	// shapes are kept for the next runs
	outs := make([]onnx.Value, len(s.outputs))
	if err := s.sess.Run(set.ins, outs); err != nil {
		destroyValues(outs)
		set.destroy()
		return fmt.Errorf("ort: run %s: %w", s.name, err)
	}
	defer destroyValues(outs)
	shapes := make([][]int64, len(outs))
	for i, v := range outs {
		shapes[i] = shapeOf(v)
	}
	views, err := s.view(outs, shapes)
	if err != nil {
		set.destroy()
		return err
	}
	err = use(views)
	set.bindOutputs(outs, shapes, s.outputs)
	s.keep(set)
	return err
}

// keep binds a CPU set whose outputs are known (see tensorSet) and returns it to the idle sets.
func (s *Session) keep(set *tensorSet) {
	if s.provider == ProviderCPU {
		set.bind(s.sess, s.inputs, s.outputs)
	}
	s.putSet(set)
}

// view is the outputs (of the given shapes) as tensors over their data, in graph order.
func (s *Session) view(outs []onnx.Value, shapes [][]int64) ([]Tensor, error) {
	views := make([]Tensor, len(outs))
	for i, v := range outs {
		views[i] = Tensor{Name: s.outputs[i].Name, Shape: shapes[i]}
		switch x := v.(type) {
		case *onnx.Tensor[float32]:
			views[i].Float32 = x.GetData()
		case *onnx.Tensor[int64]:
			views[i].Int64 = x.GetData()
		default:
			return nil, fmt.Errorf("ort: run %s: output %q has an element type the engine does not read", s.name, s.outputs[i].Name)
		}
	}
	return views, nil
}

// CopyTensors copies tensors (a run's lent outputs) into new memory: the shapes in one array,
// one data slice per tensor.
func CopyTensors(views []Tensor) []Tensor {
	rank := 0
	for _, v := range views {
		rank += len(v.Shape)
	}
	shapes := make([]int64, 0, rank)
	result := make([]Tensor, len(views))
	for i, v := range views {
		at := len(shapes)
		shapes = append(shapes, v.Shape...)
		t := Tensor{Name: v.Name, Shape: shapes[at:len(shapes):len(shapes)]}
		if v.Float32 != nil {
			t.Float32 = slices.Clone(v.Float32)
		} else {
			t.Int64 = slices.Clone(v.Int64)
		}
		result[i] = t
	}
	return result
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

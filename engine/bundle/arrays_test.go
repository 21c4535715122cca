package bundle

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadArraysRefuseWrongSizes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.i32")
	if err := os.WriteFile(p, make([]byte, 12), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadInt32s(p, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadInt32s(p, 4); err == nil {
		t.Fatal("short file accepted")
	}
	if _, err := ReadFloat32s(p, 2); err == nil {
		t.Fatal("long file accepted")
	}
	nan := filepath.Join(dir, "nan.f32")
	if err := os.WriteFile(nan, []byte{0, 0, 0xc0, 0x7f}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFloat32s(nan, 1); err == nil {
		t.Fatal("NaN accepted")
	}
}

package synth

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/llm4rec/llm4rec/engine/preprocess"
)

func TestUniqueMediaDecodesTheSame(t *testing.T) {
	img := Image(64, 48, 3)
	for _, data := range [][]byte{EncodeJPEG(img), EncodePNG(img)} {
		a, err := (preprocess.ImageConfig{}).AppendPixels(nil, data)
		if err != nil {
			t.Fatal(err)
		}
		u := UniqueMedia(data, 42)
		if bytes.Equal(u, data) || bytes.Equal(u, UniqueMedia(data, 43)) {
			t.Fatal("UniqueMedia did not make distinct bytes")
		}
		b, err := (preprocess.ImageConfig{}).AppendPixels(nil, u)
		if err != nil {
			t.Fatalf("tagged image does not decode: %v", err)
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("pixel %d differs after tagging", i)
			}
		}
	}
	wav := WAV(16000, 16000, 1)
	u := UniqueMedia(wav, 7)
	if bytes.Equal(u, wav) || len(u) != len(wav) {
		t.Fatal("wav not tagged")
	}
	mel, frames, err := (preprocess.AudioConfig{}).LogMel(u)
	if err != nil || frames != 98 || len(mel) != 98*64 {
		t.Fatalf("tagged wav: %d frames, %v", frames, err)
	}
	// the precomputed base64 tail gives the same bytes as encoding the tagged file whole
	for _, data := range [][]byte{EncodeJPEG(img), EncodePNG(img), wav} {
		m := NewTagged(data)
		for _, tag := range []uint64{0, 1, 1 << 40} {
			got := string(m.AppendBase64([]byte("x"), tag, true))
			if want := "x" + base64.StdEncoding.EncodeToString(UniqueMedia(data, tag)); got != want {
				t.Fatalf("AppendBase64 of a %q file differs from base64 of UniqueMedia", data[:4])
			}
		}
		if got := string(m.AppendBase64(nil, 9, false)); got != base64.StdEncoding.EncodeToString(data) {
			t.Fatal("AppendBase64 without tags must send the file as is")
		}
	}
	if other := []byte("not media"); !bytes.Equal(UniqueMedia(other, 1), other) {
		t.Error("unknown data must come back unchanged")
	}
}

package recommend

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/engine/batch"
)

// Images and WAVs are decoded at most Config.MaxDecodes at a time: with every slot taken, a
// request waits for one within its deadline and is answered ErrDeadline when the deadline
// passes first; once a slot frees, the same picture decodes.
func TestDecodesAreBounded(t *testing.T) {
	e := testEngine(t)
	img, err := os.ReadFile(filepath.Join(e.dir, "golden", "image.png"))
	if err != nil {
		t.Fatal(err)
	}
	// bytes after the PNG and the WAV: keys no earlier run cached, the same contents
	tag := []byte(time.Now().String())
	img = append(img, tag...)
	wav, err := os.ReadFile(filepath.Join(e.dir, "golden", "audio.wav"))
	if err != nil {
		t.Fatal(err)
	}
	wav = append(wav, tag...)
	held := 0
	release := func() {
		for ; held > 0; held-- {
			<-e.decodes
		}
	}
	t.Cleanup(release)
	for range cap(e.decodes) {
		e.decodes <- struct{}{}
		held++
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.EmbedImage(ctx, img); !errors.Is(err, batch.ErrDeadline) {
		t.Fatalf("image with every decoding slot taken: %v", err)
	}
	if _, err := e.EmbedAudio(ctx, wav); !errors.Is(err, batch.ErrDeadline) {
		t.Fatalf("audio with every decoding slot taken: %v", err)
	}
	release()
	// with a slot free but the decoding memory taken, the same: the request waits within its
	// deadline
	if !e.decodeMem.TryAcquire(e.cfg.MaxDecodeMemory) {
		t.Fatal("decoding memory in use by nothing")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	_, err = e.EmbedImage(ctx2, img)
	e.decodeMem.Release(e.cfg.MaxDecodeMemory)
	if !errors.Is(err, batch.ErrDeadline) || !strings.Contains(err.Error(), "decoding memory") {
		t.Fatalf("image with the decoding memory taken: %v", err)
	}
	if _, err := e.EmbedImage(context.Background(), img); err != nil {
		t.Fatalf("image once a slot is free: %v", err)
	}
	if len(e.decodes) != 0 {
		t.Fatalf("%d decoding slots still held", len(e.decodes))
	}
	if !e.decodeMem.TryAcquire(e.cfg.MaxDecodeMemory) {
		t.Fatal("decoding memory still held after the decodes")
	}
	e.decodeMem.Release(e.cfg.MaxDecodeMemory)
}

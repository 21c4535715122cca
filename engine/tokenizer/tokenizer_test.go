package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

type reference struct {
	Cases []struct {
		Text      string  `json:"text"`
		MaxLength int     `json:"max_length"`
		IDs       []int64 `json:"ids"`
	} `json:"cases"`
}

func loadReference(t *testing.T) reference {
	t.Helper()
	raw, err := os.ReadFile("testdata/reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Cases) == 0 {
		t.Fatal("no reference cases")
	}
	return ref
}

func load(t *testing.T, maxLen int) *Tokenizer {
	t.Helper()
	tk, err := Load("testdata/tokenizer.json", Config{MaxLength: maxLen})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tk.Close() })
	return tk
}

// Ids match the Hugging Face tokenizers library (Python) on the same tokenizer.json.
func TestIDsMatchReference(t *testing.T) {
	ref := loadReference(t)
	byLen := map[int]*Tokenizer{}
	for _, c := range ref.Cases {
		tk := byLen[c.MaxLength]
		if tk == nil {
			tk = load(t, c.MaxLength)
			byLen[c.MaxLength] = tk
		}
		got, err := tk.Encode(c.Text)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.IDs) {
			t.Errorf("max %d %q:\n got %v\nwant %v", c.MaxLength, c.Text, got, c.IDs)
		}
	}
}

func TestEncodeBatchPadsToLongest(t *testing.T) {
	ref := loadReference(t)
	tk := load(t, 128)
	var texts []string
	var want [][]int64
	for _, c := range ref.Cases {
		if c.MaxLength == 128 {
			texts = append(texts, c.Text)
			want = append(want, c.IDs)
		}
	}
	b, err := tk.EncodeBatch(texts)
	if err != nil {
		t.Fatal(err)
	}
	longest := 0
	for _, w := range want {
		longest = max(longest, len(w))
	}
	if b.Size != len(texts) || b.Len != longest || len(b.InputIDs) != b.Size*b.Len || len(b.AttentionMask) != b.Size*b.Len {
		t.Fatalf("batch %d x %d, ids %d, mask %d; want %d x %d", b.Size, b.Len, len(b.InputIDs), len(b.AttentionMask), len(texts), longest)
	}
	for i, w := range want {
		row := b.InputIDs[i*b.Len : (i+1)*b.Len]
		mask := b.AttentionMask[i*b.Len : (i+1)*b.Len]
		for j := range row {
			wantID, wantMask := int64(0), int64(0)
			if j < len(w) {
				wantID, wantMask = w[j], 1
			}
			if row[j] != wantID || mask[j] != wantMask {
				t.Fatalf("row %d col %d: id %d mask %d, want %d %d", i, j, row[j], mask[j], wantID, wantMask)
			}
		}
	}
}

func TestTruncationAtTheEdge(t *testing.T) {
	tk := load(t, 8)
	// "a b c d e f" is 6 word tokens + [CLS] + [SEP] = 8: exactly at the limit, untouched.
	at, err := tk.Encode("a b c d e f")
	if err != nil {
		t.Fatal(err)
	}
	over, err := tk.Encode("a b c d e f g")
	if err != nil {
		t.Fatal(err)
	}
	if len(at) != 8 || len(over) != 8 || fmt.Sprint(at) != fmt.Sprint(over[:8]) {
		t.Fatalf("at limit %v, one past %v", at, over)
	}
	if over[7] != 102 { // [SEP] kept after truncation
		t.Fatalf("last id %d, want [SEP] 102", over[7])
	}
}

func TestBadInput(t *testing.T) {
	tk, err := Load("testdata/tokenizer.json", Config{MaxLength: 16, MaxTextBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	if _, err := tk.Encode(strings.Repeat("a", 10)); err != nil {
		t.Fatalf("text at the byte limit: %v", err)
	}
	if _, err := tk.Encode(strings.Repeat("a", 11)); !errors.Is(err, ErrText) {
		t.Fatalf("text past the byte limit: %v", err)
	}
	if _, err := tk.EncodeBatch([]string{"ok", "\xff\xfe"}); !errors.Is(err, ErrText) || !strings.Contains(err.Error(), "text 1") {
		t.Fatalf("invalid UTF-8: %v", err)
	}
	for _, c := range []struct {
		data string
		cfg  Config
		want string
	}{
		{`{"model": {}}`, Config{MaxLength: 1}, "max length 1"},
		{`not json`, Config{MaxLength: 8}, "not a tokenizer.json"},
		{`{"version": "1.0"}`, Config{MaxLength: 8}, "no model"},
		{`{"model": {"type": "Nope"}}`, Config{MaxLength: 8}, "tokenizer:"},
	} {
		if _, err := FromBytes([]byte(c.data), c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("FromBytes(%q): %v, want %q", c.data, err, c.want)
		}
	}
	if _, err := Load("testdata/missing.json", Config{MaxLength: 8}); err == nil {
		t.Error("missing file: no error")
	}
	if err := tk.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tk.Close(); err != nil {
		t.Fatal("second close:", err)
	}
	if _, err := tk.Encode("x"); err == nil {
		t.Fatal("encode after close: no error")
	}
}

func TestConcurrentEncode(t *testing.T) {
	tk := load(t, 32)
	want, err := tk.Encode("the quick brown fox jumps over the lazy dog")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				got, err := tk.Encode("the quick brown fox jumps over the lazy dog")
				if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("concurrent encode: %v %v", got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkEncodeBatch(b *testing.B) {
	tk, err := Load("testdata/tokenizer.json", Config{MaxLength: 128})
	if err != nil {
		b.Fatal(err)
	}
	defer tk.Close()
	texts := make([]string, 32)
	for i := range texts {
		texts[i] = fmt.Sprintf("item %d: a cowboy doll is profoundly threatened when a new spaceman figure supplants him", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.EncodeBatch(texts); err != nil {
			b.Fatal(err)
		}
	}
}

package preprocess

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
)

func TestAudioBadInputs(t *testing.T) {
	mono := sine(400, 16000, 1, 16, 440, 0.5)
	ok := wavSpec{channels: 1, rate: 16000, bits: 16, samples: mono}
	with := func(f func(*wavSpec)) []byte {
		s := ok
		f(&s)
		return makeWAV(s)
	}
	valid := makeWAV(ok)
	floatSub := append(le16(22), le16(32)...)
	floatSub = append(floatSub, le32(4)...)
	floatSub = append(floatSub, 0x03, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71)

	tests := []struct {
		name string
		cfg  AudioConfig
		data []byte
		want error
		msg  string
	}{
		{"nil", AudioConfig{}, nil, ErrEmptyInput, "empty"},
		{"empty", AudioConfig{}, []byte{}, ErrEmptyInput, "empty"},
		{"riff prefix", AudioConfig{}, []byte("RI"), ErrAudioCorrupt, "truncated riff header"},
		{"riff only", AudioConfig{}, []byte("RIFF"), ErrAudioCorrupt, "truncated riff header"},
		{"riff 11 bytes", AudioConfig{}, valid[:11], ErrAudioCorrupt, "truncated riff header"},
		{"text", AudioConfig{}, []byte("not audio at all"), ErrAudioFormat, "unrecognised"},
		{"ogg", AudioConfig{}, []byte("OggS\x00\x02\x00\x00"), ErrAudioFormat, "ogg"},
		{"flac", AudioConfig{}, []byte("fLaC\x00\x00\x00\x22"), ErrAudioFormat, "flac"},
		{"mp3", AudioConfig{}, []byte("ID3\x04\x00\x00\x00\x00"), ErrAudioFormat, "mp3"},
		{"aiff", AudioConfig{}, []byte("FORM\x00\x00\x00\x04AIFF"), ErrAudioFormat, "aiff"},
		{"rifx", AudioConfig{}, []byte("RIFX\x00\x00\x00\x04WAVE"), ErrAudioFormat, "RIFX"},
		{"rf64", AudioConfig{}, []byte("RF64\xff\xff\xff\xffWAVE"), ErrAudioFormat, "RF64"},
		{"png image", AudioConfig{}, encodePNG(t, noiseImage(4, 4)), ErrAudioFormat, "png image"},
		{"webp", AudioConfig{}, []byte("RIFF\x04\x00\x00\x00WEBP"), ErrAudioFormat, `"WEBP"`},
		{"avi", AudioConfig{}, []byte("RIFF\x04\x00\x00\x00AVI "), ErrAudioFormat, `"AVI "`},
		{"riff size beyond file", AudioConfig{}, with(func(s *wavSpec) { s.riffSize = 1 << 30 }), ErrAudioCorrupt, "riff size 1073741824 exceeds"},
		{"riff size max", AudioConfig{}, with(func(s *wavSpec) { s.riffSize = 1<<32 - 1 }), ErrAudioCorrupt, "exceeds"},
		{"riff size too small", AudioConfig{}, with(func(s *wavSpec) { s.riffSize = 2 }), ErrAudioCorrupt, "smaller than its form"},
		{"data size beyond file", AudioConfig{}, with(func(s *wavSpec) { s.dataSize = 1 << 30 }), ErrAudioCorrupt, `chunk "data" at offset 36 declares 1073741824 bytes`},
		{"data size max", AudioConfig{}, with(func(s *wavSpec) { s.dataSize = 1<<32 - 1 }), ErrAudioCorrupt, "declares 4294967295"},
		{"fmt size beyond file", AudioConfig{}, append([]byte("RIFF\x0c\x00\x00\x00WAVEfmt "), le32(1<<31)...), ErrAudioCorrupt, "declares 2147483648 bytes, 0 present"},
		{"fmt size beyond riff", AudioConfig{}, []byte("RIFF\x0e\x00\x00\x00WAVEfmt \xff\xff\xff\xff\x01\x00"), ErrAudioCorrupt, `chunk "fmt " at offset 12 declares 4294967295`},
		{"list size beyond file", AudioConfig{}, with(func(s *wavSpec) { s.before = append([]byte("LIST"), le32(5000)...) }), ErrAudioCorrupt, `chunk "LIST"`},
		{"truncated data chunk", AudioConfig{}, func() []byte {
			b := bytes.Clone(valid[:len(valid)-100])
			copy(b[4:8], le32(len(b)-8)) // riff size consistent, data size not
			return b
		}(), ErrAudioCorrupt, `chunk "data"`},
		{"truncated file", AudioConfig{}, valid[:len(valid)-1], ErrAudioCorrupt, "riff size"},
		{"trailing partial chunk header", AudioConfig{}, with(func(s *wavSpec) { s.after = []byte("JUNK\x00") }), ErrAudioCorrupt, "truncated chunk header"},
		{"no fmt", AudioConfig{}, with(func(s *wavSpec) { s.noFmt = true }), ErrAudioCorrupt, "no fmt chunk"},
		{"no data", AudioConfig{}, with(func(s *wavSpec) { s.noData = true }), ErrAudioCorrupt, "no data chunk"},
		{"no chunks", AudioConfig{}, []byte("RIFF\x04\x00\x00\x00WAVE"), ErrAudioCorrupt, "no fmt chunk"},
		{"two fmt", AudioConfig{}, with(func(s *wavSpec) { s.between = rawChunk("fmt ", valid[20:36]) }), ErrAudioCorrupt, "second fmt"},
		{"two data", AudioConfig{}, with(func(s *wavSpec) { s.after = rawChunk("data", []byte{0, 0}) }), ErrAudioCorrupt, "second data"},
		{"short fmt", AudioConfig{}, append([]byte("RIFF\x1a\x00\x00\x00WAVE"), append(rawChunk("fmt ", make([]byte, 6)), rawChunk("data", nil)...)...), ErrAudioCorrupt, "fmt chunk of 6 bytes"},
		{"ieee float", AudioConfig{}, with(func(s *wavSpec) { s.format = 3; s.bits = 32 }), ErrAudioFormat, "0x0003 (ieee float)"},
		{"mu-law", AudioConfig{}, with(func(s *wavSpec) { s.format = 7; s.bits = 8 }), ErrAudioFormat, "mu-law"},
		{"mp3 in wav", AudioConfig{}, with(func(s *wavSpec) { s.format = 0x55 }), ErrAudioFormat, "mpeg"},
		{"extensible float", AudioConfig{}, with(func(s *wavSpec) { s.format = 0xFFFE; s.bits = 32; s.fmtExtra = floatSub }), ErrAudioFormat, "sub-format 03 00"},
		{"extensible short", AudioConfig{}, with(func(s *wavSpec) { s.format = 0xFFFE; s.fmtExtra = le16(0) }), ErrAudioCorrupt, "extensible fmt chunk of 18 bytes"},
		{"zero channels", AudioConfig{}, with(func(s *wavSpec) { s.channels = 0; s.blockAlign = -1 }), ErrAudioFormat, "0 channels"},
		{"nine channels", AudioConfig{}, with(func(s *wavSpec) { s.channels = 9 }), ErrAudioFormat, "9 channels, accepted 1..8"},
		{"65535 channels", AudioConfig{}, with(func(s *wavSpec) { s.channels = 65535; s.blockAlign = 2 }), ErrAudioFormat, "65535 channels"},
		{"channel limit", AudioConfig{MaxChannels: 1}, with(func(s *wavSpec) { s.channels = 2; s.samples = append(s.samples, s.samples...) }), ErrAudioFormat, "2 channels, accepted 1..1"},
		{"zero sample rate", AudioConfig{}, with(func(s *wavSpec) { s.rate = 0 }), ErrAudioFormat, "sample rate 0 Hz"},
		{"sample rate too high", AudioConfig{}, with(func(s *wavSpec) { s.rate = 384000 }), ErrAudioFormat, "sample rate 384000 Hz, accepted 1..192000"},
		{"sample rate max uint32", AudioConfig{}, with(func(s *wavSpec) { s.rate = 1<<32 - 1 }), ErrAudioFormat, "4294967295 Hz"},
		{"zero bits", AudioConfig{}, with(func(s *wavSpec) { s.bits = 0; s.blockAlign = 2 }), ErrAudioFormat, "0 bits"},
		{"12 bits", AudioConfig{}, with(func(s *wavSpec) { s.bits = 12; s.blockAlign = 2 }), ErrAudioFormat, "12 bits"},
		{"64 bits", AudioConfig{}, with(func(s *wavSpec) { s.bits = 64; s.blockAlign = 8 }), ErrAudioFormat, "64 bits"},
		{"block align zero", AudioConfig{}, with(func(s *wavSpec) { s.blockAlign = -1 }), ErrAudioCorrupt, "block align 0"},
		{"block align wrong", AudioConfig{}, with(func(s *wavSpec) { s.blockAlign = 4 }), ErrAudioCorrupt, "block align 4"},
		{"odd data size 16-bit", AudioConfig{}, with(func(s *wavSpec) { s.dataBytes = []byte{1, 2, 3} }), ErrAudioCorrupt, "3 bytes is not a whole number of 2-byte frames"},
		{"partial stereo frame", AudioConfig{}, with(func(s *wavSpec) { s.channels = 2; s.dataBytes = make([]byte, 6) }), ErrAudioCorrupt, "not a whole number of 4-byte frames"},
		{"partial 24-bit sample", AudioConfig{}, with(func(s *wavSpec) { s.bits = 24; s.dataBytes = make([]byte, 7) }), ErrAudioCorrupt, "3-byte frames"},
		{"empty data", AudioConfig{}, with(func(s *wavSpec) { s.dataBytes = []byte{} }), ErrAudioEmpty, "data chunk is empty"},
		{"byte limit", AudioConfig{MaxBytes: 100}, valid, ErrAudioTooLarge, "limit 100"},
		{"bad config", AudioConfig{WinLength: 500}, valid, ErrConfig, "win_length"},
		{"nan config", AudioConfig{FMax: math.NaN()}, valid, ErrConfig, "f_max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mel, frames, err := tt.cfg.LogMel(tt.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if mel != nil || frames != 0 {
				t.Errorf("got %d values, %d frames with an error", len(mel), frames)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "preprocess: ") || !strings.Contains(msg, tt.msg) {
				t.Errorf("message %q: want prefix %q and %q inside", msg, "preprocess: ", tt.msg)
			}
		})
	}
}

// TestWAVLayouts checks files that are unusual but valid: each must give
// exactly the spectrogram of the plain file with the same samples.
func TestWAVLayouts(t *testing.T) {
	samples8 := sine(801, 16000, 1, 8, 1000, 0.5) // odd byte count
	samples16 := sine(800, 16000, 1, 16, 1000, 0.5)
	pcmSub := append(le16(22), le16(16)...)
	pcmSub = append(pcmSub, le32(4)...)
	pcmSub = append(pcmSub, pcmSubformat[:]...)
	tests := []struct {
		name  string
		plain wavSpec
		odd   wavSpec
	}{
		{"odd list chunk before fmt",
			wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16},
			wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16, before: rawChunk("LIST", []byte("INFOISFT\x03\x00\x00\x00ab\x00"))}},
		{"junk between fmt and data",
			wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16},
			wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16, between: rawChunk("JUNK", make([]byte, 27))}},
		{"data before fmt",
			wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16},
			wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16, dataFirst: true}},
		{"chunks after data",
			wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16},
			wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16, after: rawChunk("LIST", []byte("adtlxyz"))}},
		{"odd 8-bit data with pad and a chunk after",
			wavSpec{channels: 1, rate: 16000, bits: 8, samples: samples8},
			wavSpec{channels: 1, rate: 16000, bits: 8, samples: samples8, after: rawChunk("cue ", le32(0))}},
		{"extensible pcm",
			wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16},
			wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16, format: 0xFFFE, fmtExtra: pcmSub}},
		{"fmt with cbSize",
			wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16},
			wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16, fmtExtra: le16(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, wf, err := AudioConfig{}.LogMel(makeWAV(tt.plain))
			if err != nil {
				t.Fatal(err)
			}
			got, gf, err := AudioConfig{}.LogMel(makeWAV(tt.odd))
			if err != nil {
				t.Fatal(err)
			}
			if gf != wf || !equalFloat32(got, want) {
				t.Errorf("frames %d vs %d, spectrograms differ", gf, wf)
			}
		})
	}

	t.Run("missing final pad byte", func(t *testing.T) {
		b := makeWAV(wavSpec{channels: 1, rate: 16000, bits: 8, samples: samples8})
		b = b[:len(b)-1] // drop the pad
		copy(b[4:8], le32(len(b)-8))
		if _, _, err := (AudioConfig{}).LogMel(b); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("bytes after riff ignored", func(t *testing.T) {
		plain := makeWAV(wavSpec{channels: 1, rate: 16000, bits: 16, samples: samples16})
		want, _, _ := AudioConfig{}.LogMel(plain)
		got, _, err := AudioConfig{}.LogMel(append(bytes.Clone(plain), "garbage"...))
		if err != nil || !equalFloat32(got, want) {
			t.Fatalf("err %v or values differ", err)
		}
	})
}

func equalFloat32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// refFilter evaluates the HTK mel filterbank independently of the
// package: torchaudio's formulation, slopes between consecutive corner
// frequencies.
func refFilter(sampleRate, nFFT, nMels int, fMin, fMax float64, m, k int) float64 {
	mel := func(f float64) float64 { return 2595 * math.Log10(1+f/700) }
	hz := func(m float64) float64 { return 700 * (math.Pow(10, m/2595) - 1) }
	step := (mel(fMax) - mel(fMin)) / float64(nMels+1)
	f := make([]float64, nMels+2)
	for i := range f {
		f[i] = hz(mel(fMin) + float64(i)*step)
	}
	freq := float64(k) * float64(sampleRate) / float64(nFFT)
	down := (freq - f[m]) / (f[m+1] - f[m])
	up := (f[m+2] - freq) / (f[m+2] - f[m+1])
	return math.Max(0, math.Min(down, up))
}

func TestMelFilterbank(t *testing.T) {
	fb := melFilterbank(16000, 400, 64, 0, 8000)
	if len(fb) != 64 || len(fb[0]) != 201 {
		t.Fatalf("shape %dx%d", len(fb), len(fb[0]))
	}
	// Values computed separately (Python, float64) for the default recipe.
	for _, c := range []struct {
		m, k int
		want float64
	}{
		{0, 1, 0.5714053041684966},
		{0, 2, 0},
		{10, 9, 0.6988670169124648},
		{10, 10, 0.3460130109650871},
		{10, 15, 0},
		{21, 25, 0.11514833153401298},
		{22, 25, 0.8848516684659871},
		{40, 66, 0.30226232506431405},
		{40, 68, 0.9154159678607029},
		{40, 71, 0.1966119257826212},
		{63, 190, 0.7826830470685686},
		{63, 199, 0.12090529775487971},
	} {
		if got := fb[c.m][c.k]; math.Abs(got-c.want) > 1e-12 {
			t.Errorf("fb[%d][%d] = %v, want %v", c.m, c.k, got, c.want)
		}
	}
	// Every entry against the independent formulation, for the default
	// and another recipe.
	for _, r := range []struct {
		sr, nfft, mels int
		fmin, fmax     float64
	}{{16000, 400, 64, 0, 8000}, {22050, 1024, 80, 30, 11025}, {8000, 256, 40, 100, 3000}} {
		fb := melFilterbank(r.sr, r.nfft, r.mels, r.fmin, r.fmax)
		for m := range r.mels {
			for k := range r.nfft/2 + 1 {
				if want := refFilter(r.sr, r.nfft, r.mels, r.fmin, r.fmax, m, k); math.Abs(fb[m][k]-want) > 1e-12 {
					t.Fatalf("%+v: fb[%d][%d] = %v, want %v", r, m, k, fb[m][k], want)
				}
			}
		}
		// Peak 1 (unnormalised): each triangle's maximum is at most 1 and
		// close to it when the bins are dense enough.
		for m, row := range fb {
			peak := 0.0
			for _, w := range row {
				peak = math.Max(peak, w)
			}
			if peak > 1+1e-12 {
				t.Errorf("%+v: filter %d peaks at %v", r, m, peak)
			}
		}
	}
}

func TestHannWindow(t *testing.T) {
	w := hannPeriodic(400)
	if w[0] != 0 || math.Abs(w[200]-1) > 1e-15 || math.Abs(w[100]-0.5) > 1e-15 || math.Abs(w[399]-w[1]) > 1e-15 {
		t.Errorf("window: w[0]=%v w[100]=%v w[200]=%v w[1]=%v w[399]=%v", w[0], w[100], w[200], w[1], w[399])
	}
	sum := 0.0
	for _, v := range w {
		sum += v
	}
	if math.Abs(sum-200) > 1e-9 { // periodic Hann sums to n/2 exactly
		t.Errorf("sum = %v", sum)
	}
}

func TestResampledLen(t *testing.T) {
	for _, c := range []struct{ n, src, dst, want int }{
		{0, 44100, 16000, 0},
		{1, 44100, 16000, 1},
		{44100, 44100, 16000, 16000}, // floor(44099*16000/44100)+1
		{48000, 48000, 16000, 16000}, // floor(47999/3)+1
		{48001, 48000, 16000, 16001},
		{8000, 8000, 16000, 15999}, // floor(7999*2)+1
		{16000, 16000, 16000, 16000},
		{3, 2, 3, 4}, // positions 0, 2/3, 4/3, 2
		{10, 192000, 16000, 1},
		{13, 192000, 16000, 2},
	} {
		if got := ResampledLen(c.n, c.src, c.dst); got != c.want {
			t.Errorf("ResampledLen(%d, %d, %d) = %d, want %d", c.n, c.src, c.dst, got, c.want)
		}
	}
	for _, c := range []struct{ n, win, hop, want int }{
		{0, 400, 160, 1}, {399, 400, 160, 1}, {400, 400, 160, 1}, {559, 400, 160, 1},
		{560, 400, 160, 2}, {16000, 400, 160, 98}, {160000, 400, 160, 998},
	} {
		if got := FrameCount(c.n, c.win, c.hop); got != c.want {
			t.Errorf("FrameCount(%d, %d, %d) = %d, want %d", c.n, c.win, c.hop, got, c.want)
		}
	}
}

func TestResampleLinear(t *testing.T) {
	// A ramp x[i] = i is reproduced exactly at every position j*src/dst.
	for _, r := range [][2]int64{{44100, 16000}, {8000, 16000}, {48000, 16000}, {11025, 16000}, {3, 7}} {
		src, dst := r[0], r[1]
		x := make([]float64, 1000)
		for i := range x {
			x[i] = float64(i)
		}
		out := make([]float64, ResampledLen(len(x), int(src), int(dst)))
		resampleLinear(out, x, src, dst)
		for j, v := range out {
			if want := float64(j) * float64(src) / float64(dst); math.Abs(v-want) > 1e-9 {
				t.Fatalf("%d->%d: out[%d] = %v, want %v", src, dst, j, v, want)
			}
		}
		if last := float64(len(out)-1) * float64(src) / float64(dst); last > float64(len(x)-1) {
			t.Errorf("%d->%d: last position %v beyond the input", src, dst, last)
		}
	}
	// Midpoints interpolate.
	out := make([]float64, 3)
	resampleLinear(out, []float64{0, 1}, 1, 2)
	if out[0] != 0 || out[1] != 0.5 || out[2] != 1 {
		t.Errorf("upsample by 2: %v", out)
	}
}

// argmaxRow returns the index of the largest value of row.
func argmaxRow(row []float32) int {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return best
}

func TestSinePeak(t *testing.T) {
	cfg := AudioConfig{}.withDefaults()
	fb := melFilterbank(16000, 400, 64, 0, 8000)
	for _, c := range []struct {
		name                 string
		rate, channels, bits int
		freq                 float64
	}{
		{"16k mono 16-bit 1000Hz", 16000, 1, 16, 1000},
		{"16k mono 16-bit 2000Hz", 16000, 1, 16, 2000},
		{"16k mono 16-bit 4000Hz", 16000, 1, 16, 4000},
		{"16k mono 16-bit 440Hz", 16000, 1, 16, 440},
		{"16k stereo 8-bit 1000Hz", 16000, 2, 8, 1000},
		{"16k mono 32-bit 3000Hz", 16000, 1, 32, 3000},
		{"44.1k stereo 24-bit 1000Hz", 44100, 2, 24, 1000},
		{"48k 6ch 16-bit 2000Hz", 48000, 6, 16, 2000},
		{"8k mono 16-bit 1000Hz", 8000, 1, 16, 1000},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := sineWAV(1, c.rate, c.channels, c.bits, c.freq, 0.5)
			mel, frames, err := AudioConfig{}.LogMel(data)
			if err != nil {
				t.Fatal(err)
			}
			n := ResampledLen(c.rate, c.rate, 16000)
			if want := FrameCount(n, 400, 160); frames != want || len(mel) != frames*64 {
				t.Fatalf("frames %d (len %d), want %d", frames, len(mel), want)
			}
			// The expected band is the triangle that weighs the tone's
			// frequency most, computed from the formula, not the code.
			want, best := 0, -1.0
			for m := range 64 {
				if w := refFilterHz(16000, 64, 0, 8000, m, c.freq); w > best {
					want, best = m, w
				}
			}
			for f := 2; f < frames-2; f++ {
				if got := argmaxRow(mel[f*64 : (f+1)*64]); got != want {
					t.Fatalf("frame %d: peak in band %d, want %d", f, got, want)
				}
			}
			// Bin-exact tones at 16 kHz have a known power: the periodic
			// Hann window's spectrum has A*N/4 at the tone's bin and half
			// that at each neighbour, so power P, P/4, P/4 with
			// P = (0.5*400/4)^2.
			if c.rate == 16000 && math.Mod(c.freq, 40) == 0 && c.bits >= 16 {
				k := int(c.freq / 40)
				p := math.Pow(0.5*400/4, 2)
				for _, m := range []int{want - 1, want, want + 1} {
					e := math.Log(fb[m][k-1]*p/4 + fb[m][k]*p + fb[m][k+1]*p/4 + cfg.LogOffset)
					if got := float64(mel[10*64+m]); math.Abs(got-e) > 2e-3 {
						t.Errorf("band %d: log-mel %v, want %v", m, got, e)
					}
				}
			}
		})
	}
}

// refFilterHz is refFilter at an arbitrary frequency.
func refFilterHz(sampleRate, nMels int, fMin, fMax float64, m int, freq float64) float64 {
	mel := func(f float64) float64 { return 2595 * math.Log10(1+f/700) }
	hz := func(m float64) float64 { return 700 * (math.Pow(10, m/2595) - 1) }
	step := (mel(fMax) - mel(fMin)) / float64(nMels+1)
	l, c, r := hz(mel(fMin)+float64(m)*step), hz(mel(fMin)+float64(m+1)*step), hz(mel(fMin)+float64(m+2)*step)
	return math.Max(0, math.Min((freq-l)/(c-l), (r-freq)/(r-c)))
}

func TestAudioDownmixAndScale(t *testing.T) {
	n := 4000
	s := sine(n, 16000, 1, 16, 1000, 0.5)
	mono := makeWAV(wavSpec{channels: 1, rate: 16000, bits: 16, samples: s})
	same := make([]int32, 0, 2*n)
	opposite := make([]int32, 0, 2*n)
	for _, v := range s {
		same = append(same, v, v)
		opposite = append(opposite, v, -v)
	}
	want, _, err := AudioConfig{}.LogMel(mono)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := AudioConfig{}.LogMel(makeWAV(wavSpec{channels: 2, rate: 16000, bits: 16, samples: same}))
	if err != nil || !equalFloat32(got, want) {
		t.Fatalf("identical channels differ from mono (err %v)", err)
	}
	silent, _, err := AudioConfig{}.LogMel(makeWAV(wavSpec{channels: 2, rate: 16000, bits: 16, samples: opposite}))
	if err != nil {
		t.Fatal(err)
	}
	floor := float32(math.Log(1e-6))
	for i, v := range silent {
		if v != floor {
			t.Fatalf("opposite channels: value %d = %v, want %v", i, v, floor)
		}
	}
	// The same signal at 8, 16, 24 and 32 bits scales to the same [-1,1]
	// values, up to quantisation.
	for _, bits := range []int{8, 24, 32} {
		got, _, err := AudioConfig{}.LogMel(makeWAV(wavSpec{channels: 1, rate: 16000, bits: bits, samples: sine(n, 16000, 1, bits, 1000, 0.5)}))
		if err != nil {
			t.Fatal(err)
		}
		tol := 1e-3
		if bits == 8 {
			tol = 0.1
		}
		for m := range 64 {
			// Compare loud bands only; quiet ones are dominated by
			// quantisation noise.
			if want[10*64+m] > 0 && math.Abs(float64(got[10*64+m]-want[10*64+m])) > tol {
				t.Errorf("%d bits band %d: %v vs 16 bits %v", bits, m, got[10*64+m], want[10*64+m])
			}
		}
	}
	// 8-bit silence is 128, not 0.
	got, _, err = AudioConfig{}.LogMel(makeWAV(wavSpec{channels: 1, rate: 16000, bits: 8, samples: make([]int32, 500)}))
	if err != nil || got[0] != floor {
		t.Errorf("8-bit silence: %v, %v", got[:1], err)
	}
}

func TestAudioTruncationAndPadding(t *testing.T) {
	// 12 s at 16 kHz keeps 10 s: 998 frames, equal to the first 10 s alone.
	long := sineWAV(12, 16000, 1, 16, 700, 0.3)
	ten := sineWAV(10, 16000, 1, 16, 700, 0.3)
	a, fa, err := AudioConfig{}.LogMel(long)
	if err != nil {
		t.Fatal(err)
	}
	b, fb, err := AudioConfig{}.LogMel(ten)
	if err != nil {
		t.Fatal(err)
	}
	if fa != 998 || fb != 998 || !equalFloat32(a, b) {
		t.Errorf("frames %d and %d, want 998, equal values", fa, fb)
	}
	// Resampled too: 12 s at 44.1 kHz gives 10 s at 16 kHz, and equals the
	// first 10 s (+1 sample for the interpolation) of it.
	long44 := sineWAV(12, 44100, 1, 16, 700, 0.3)
	_, f44, err := AudioConfig{}.LogMel(long44)
	if err != nil || f44 != 998 {
		t.Errorf("44.1 kHz: %d frames, %v", f44, err)
	}
	// MaxSeconds shorter than a window: one zero-padded frame.
	short, frames, err := AudioConfig{MaxSeconds: 0.01}.LogMel(ten)
	if err != nil || frames != 1 || len(short) != 64 {
		t.Errorf("max 0.01 s: %d frames, %v", frames, err)
	}
	// A clip shorter than a window equals the same clip zero-padded.
	s := sine(100, 16000, 1, 16, 1000, 0.5)
	padded := append(append([]int32(nil), s...), make([]int32, 300)...)
	x, fx, err := AudioConfig{}.LogMel(makeWAV(wavSpec{channels: 1, rate: 16000, bits: 16, samples: s}))
	if err != nil {
		t.Fatal(err)
	}
	y, fy, err := AudioConfig{}.LogMel(makeWAV(wavSpec{channels: 1, rate: 16000, bits: 16, samples: padded}))
	if err != nil || fx != 1 || fy != 1 || !equalFloat32(x, y) {
		t.Errorf("short clip: frames %d, %d, %v", fx, fy, err)
	}
	// One sample.
	if _, f, err := (AudioConfig{}).LogMel(makeWAV(wavSpec{channels: 1, rate: 16000, bits: 16, samples: []int32{1000}})); err != nil || f != 1 {
		t.Errorf("one sample: %d frames, %v", f, err)
	}
}

func TestAudioConcurrent(t *testing.T) {
	f, err := NewAudioFeaturizer(AudioConfig{})
	if err != nil {
		t.Fatal(err)
	}
	inputs := [][]byte{
		sineWAV(1, 16000, 1, 16, 1000, 0.5),
		sineWAV(0.5, 44100, 2, 24, 300, 0.2),
		sineWAV(2, 8000, 1, 8, 2000, 0.7),
	}
	want := make([][]float32, len(inputs))
	for i, in := range inputs {
		if want[i], _, err = f.LogMel(in); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for r := range 5 {
				i := (g + r) % len(inputs)
				got, _, err := f.LogMel(inputs[i])
				if err != nil || !equalFloat32(got, want[i]) {
					t.Errorf("goroutine %d input %d: differs (%v)", g, i, err)
				}
			}
		})
	}
	wg.Wait()
}

func TestAudioConfig(t *testing.T) {
	c := AudioConfig{}.withDefaults()
	want := AudioConfig{SampleRate: 16000, NFFT: 400, WinLength: 400, HopLength: 160, NMels: 64,
		FMin: 0, FMax: 8000, LogOffset: 1e-6, MaxSeconds: 10, MaxChannels: 8, MaxSourceRate: 192000, MaxBytes: 20 << 20}
	if c != want {
		t.Errorf("defaults %+v, want %+v", c, want)
	}
	for _, bad := range []AudioConfig{
		{SampleRate: -1}, {NFFT: 1}, {WinLength: 401}, {HopLength: -1}, {NMels: 2000},
		{FMin: 9000}, {FMin: -1}, {FMax: math.Inf(1)}, {LogOffset: -1}, {MaxSeconds: -1},
		{MaxSeconds: 1e9}, {MaxSeconds: 1e-9}, {MaxChannels: -1}, {MaxSourceRate: -1}, {MaxBytes: -1},
	} {
		if _, err := NewAudioFeaturizer(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err = %v, want ErrConfig", bad, err)
		}
	}
	f, err := NewAudioFeaturizer(AudioConfig{NFFT: 512, WinLength: 400, NMels: 80, SampleRate: 22050})
	if err != nil {
		t.Fatal(err)
	}
	mel, frames, err := f.LogMel(sineWAV(1, 22050, 1, 16, 1000, 0.5))
	if err != nil || frames != FrameCount(22050, 400, 160) || len(mel) != frames*80 {
		t.Errorf("n_fft 512 / 80 mels: %d frames, %d values, %v", frames, len(mel), err)
	}
	// AppendLogMel appends.
	batch, _, err := f.AppendLogMel([]float32{1, 2}, sineWAV(0.1, 22050, 1, 16, 1000, 0.5))
	if err != nil || batch[0] != 1 || batch[1] != 2 || (len(batch)-2)%80 != 0 {
		t.Errorf("AppendLogMel: len %d, %v", len(batch), err)
	}
}

// Package synth makes the synthetic inputs the benches send: query texts, pictures, WAV
// clips, and copies of media that carry a tag, so that content-keyed caches see new input.
package synth

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"strings"
)

// Image draws a w x h picture (colour gradients, a few shapes and some noise, so
// that it compresses like a photograph rather than a flat fill) from seed.
func Image(w, h int, seed uint64) *image.NRGBA {
	rng := rand.New(rand.NewPCG(seed, 0x1d))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	c0 := [3]float64{rng.Float64() * 255, rng.Float64() * 255, rng.Float64() * 255}
	c1 := [3]float64{rng.Float64() * 255, rng.Float64() * 255, rng.Float64() * 255}
	type disc struct {
		x, y, r float64
		c       color.NRGBA
	}
	discs := make([]disc, 3+rng.IntN(4))
	for i := range discs {
		discs[i] = disc{rng.Float64() * float64(w), rng.Float64() * float64(h), (0.05 + 0.2*rng.Float64()) * float64(min(w, h)),
			color.NRGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255}}
	}
	for y := 0; y < h; y++ {
		t := float64(y) / float64(max(h-1, 1))
		for x := 0; x < w; x++ {
			var px [3]float64
			for k := range px {
				px[k] = c0[k]*(1-t) + c1[k]*t + 4*rng.NormFloat64()
			}
			for _, d := range discs {
				if dx, dy := float64(x)-d.x, float64(y)-d.y; dx*dx+dy*dy < d.r*d.r {
					px = [3]float64{float64(d.c.R), float64(d.c.G), float64(d.c.B)}
				}
			}
			i := img.PixOffset(x, y)
			for k := range px {
				img.Pix[i+k] = uint8(math.Max(0, math.Min(255, px[k])))
			}
			img.Pix[i+3] = 255
		}
	}
	return img
}

// EncodeJPEG encodes img at quality 85.
func EncodeJPEG(img image.Image) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		panic(err) // writing to memory cannot fail
	}
	return buf.Bytes()
}

// EncodePNG encodes img.
func EncodePNG(img image.Image) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// WAV writes a mono 16-bit PCM WAV of n samples at rate Hz: a few tones with a slow
// tremolo and some noise, from seed.
func WAV(n, rate int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0xa5))
	f1, f2 := 110+rng.Float64()*440, 440+rng.Float64()*1500
	pcm := make([]int16, n)
	for i := range pcm {
		t := float64(i) / float64(rate)
		v := 0.4*math.Sin(2*math.Pi*f1*t) + 0.2*math.Sin(2*math.Pi*f2*t)
		v *= 0.6 + 0.4*math.Sin(2*math.Pi*1.5*t)
		v += 0.05 * rng.NormFloat64()
		pcm[i] = int16(math.Max(-1, math.Min(1, v)) * 32000)
	}
	return wavBytes(pcm, rate)
}

func wavBytes(pcm []int16, rate int) []byte {
	data := 2 * len(pcm)
	b := make([]byte, 44+data)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+data))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], 1) // mono
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(data))
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(s))
	}
	return b
}

// UniqueMedia returns a copy of a JPEG, PNG or PCM WAV file whose bytes carry tag, so that
// content-keyed caches (the engine's embedding cache) see a new input, while what the
// decoders produce does not change (JPEG: a comment segment; PNG: a tEXt chunk) or changes
// inaudibly (WAV: the first four samples). Other data is returned unchanged. Only the first
// mediaHead(data) bytes of data are rewritten; what follows them is copied as is, and the
// rewritten head is a multiple of 3 bytes long, so that base64 of the rest can be computed
// once (see Tagged).
func UniqueMedia(data []byte, tag uint64) []byte {
	h := mediaHead(data)
	if h == 0 {
		return data
	}
	head := tagHead(data[:h], tag)
	return append(head, data[h:]...)
}

// mediaHead is how many leading bytes of data UniqueMedia rewrites (0: data is not media it
// knows).
func mediaHead(data []byte) int {
	switch {
	case bytes.HasPrefix(data, []byte("\xff\xd8")):
		return 2 // SOI
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) && len(data) >= 33:
		return 33 // signature and IHDR
	case len(data) >= 54 && string(data[:4]) == "RIFF" && string(data[36:40]) == "data":
		return 54 // canonical header and the first five samples
	}
	return 0
}

// tagHead rewrites the head of a media file (mediaHead bytes) to carry tag; the result is a
// multiple of 3 bytes long.
func tagHead(head []byte, tag uint64) []byte {
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], tag)
	switch len(head) {
	case 2: // JPEG: SOI, then COM (FF FE) with a 2-byte length that counts itself: 15 bytes
		out := make([]byte, 0, 15+64)
		out = append(out, 0xff, 0xd8, 0xff, 0xfe, 0, 11)
		return append(append(out, t[:]...), 0)
	case 33: // PNG: IHDR, then a tEXt chunk of 12+15 bytes: 60 bytes
		body := append(append([]byte("bench\x00"), t[:]...), '.')
		out := make([]byte, 0, 60+64)
		out = append(out, head...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(body)))
		out = append(out, "tEXt"...)
		out = append(out, body...)
		return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(out[33+4:]))
	case 54: // WAV: the first four samples carry the tag: 54 bytes
		out := make([]byte, 54, 54+64)
		copy(out, head)
		copy(out[44:52], t[:])
		return out
	}
	return bytes.Clone(head)
}

// Tagged is a media file ready to be sent base64-encoded many times with a new tag each
// time: the base64 of its unchanging tail is computed once.
type Tagged struct {
	head    []byte
	tailB64 string
	// Plain is the base64 of the file itself, sent when tags are off.
	Plain string
}

// NewTagged prepares data to be sent tagged.
func NewTagged(data []byte) Tagged {
	h := mediaHead(data)
	return Tagged{head: data[:h], tailB64: base64.StdEncoding.EncodeToString(data[h:]),
		Plain: base64.StdEncoding.EncodeToString(data)}
}

// AppendBase64 appends the base64 of the file tagged with tag (untagged when unique is
// false).
func (m Tagged) AppendBase64(dst []byte, tag uint64, unique bool) []byte {
	if !unique || len(m.head) == 0 {
		return append(dst, m.Plain...)
	}
	dst = base64.StdEncoding.AppendEncode(dst, tagHead(m.head, tag))
	return append(dst, m.tailB64...)
}

// TextWords is the words of a synthetic query; with [CLS] and [SEP] about 32 tokens.
const TextWords = 30

// words of the synthetic queries: common English words, one WordPiece token each.
var queryWords = strings.Fields(`the a film movie story about love war space family friends city night
dark funny old young man woman girl boy life death world time home school music dream
road journey secret murder detective police crime drama comedy romance action adventure
horror ghost house island ocean king queen hero team fight escape truth power money
small town big new great last first best good bad lost found true wild strange
classic western science fiction animated musical thriller mystery documentary
with and in of for to from after before during under over into where when
who what why how like very really quite most more less many few some`)

// Word is the i-th word of the synthetic queries' vocabulary (i modulo its size).
func Word(i int) string { return queryWords[i%len(queryWords)] }

// RandomText draws n words of a plausible movie query.
func RandomText(rng *rand.Rand, n int) string {
	var sb strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(queryWords[rng.IntN(len(queryWords))])
	}
	return sb.String()
}

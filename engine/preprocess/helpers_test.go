package preprocess

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"testing"
)

// sentinels lists every error a caller may see; each failure must wrap one.
var sentinels = []error{
	ErrEmptyInput, ErrImageFormat, ErrImageTooLarge, ErrImageDecode,
	ErrAudioFormat, ErrAudioCorrupt, ErrAudioTooLarge, ErrAudioEmpty,
	ErrConfig, ErrBufferSize,
}

func wrapsSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image, quality int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: quality}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func solidNRGBA(w, h int, c color.NRGBA) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return img
}

// noiseImage is a deterministic photo-like test image: smooth gradients
// plus pseudo-random texture.
func noiseImage(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	s := uint32(1)
	for y := range h {
		for x := range w {
			s = s*1664525 + 1013904223
			i := img.PixOffset(x, y)
			img.Pix[i] = uint8(x*255/w) ^ uint8(s>>28)
			img.Pix[i+1] = uint8(y*255/h) ^ uint8(s>>24&0xf)
			img.Pix[i+2] = uint8((x+y)*255/(w+h)) + uint8(s>>20&0x7)
			img.Pix[i+3] = 255
		}
	}
	return img
}

// pngHeader returns the signature and an IHDR chunk (with a correct CRC)
// declaring w x h 8-bit RGB, followed by extra bytes: a file that
// png.DecodeConfig accepts but that holds no pixel data.
func pngHeader(w, h uint32, extra []byte) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:4], w)
	binary.BigEndian.PutUint32(ihdr[4:8], h)
	ihdr[8], ihdr[9] = 8, 2 // bit depth 8, colour type RGB
	writePNGChunk(&b, "IHDR", ihdr)
	b.Write(extra)
	return b.Bytes()
}

func writePNGChunk(b *bytes.Buffer, typ string, data []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	b.Write(n[:])
	b.WriteString(typ)
	b.Write(data)
	binary.BigEndian.PutUint32(n[:], crc32IEEE(append([]byte(typ), data...)))
	b.Write(n[:])
}

func crc32IEEE(p []byte) uint32 {
	crc := ^uint32(0)
	for _, v := range p {
		crc ^= uint32(v)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xEDB88320
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

// jpegHeader returns SOI, a JFIF APP0 segment and a baseline SOF0 segment
// declaring w x h with three components: enough for jpeg.DecodeConfig,
// nothing else.
func jpegHeader(w, h uint16) []byte {
	b := []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0}
	b = append(b, 0xFF, 0xC0, 0x00, 17, 8, byte(h>>8), byte(h), byte(w>>8), byte(w), 3)
	for id := byte(1); id <= 3; id++ {
		b = append(b, id, 0x11, 0)
	}
	return b
}

// wavSpec describes a WAV file for makeWAV. Fields left zero take
// sensible values derived from the others, so that tests can break one
// field at a time.
type wavSpec struct {
	format     uint16 // default 1
	channels   int
	rate       int
	bits       int
	blockAlign int // default channels*bits/8; -1 means write 0
	samples    []int32
	dataBytes  []byte // raw data payload; overrides samples
	before     []byte // raw chunks inserted between the WAVE tag and fmt
	between    []byte // raw chunks between fmt and data
	after      []byte // raw chunks after data
	fmtExtra   []byte // bytes appended to the 16-byte fmt body
	noFmt      bool
	noData     bool
	dataFirst  bool  // write data before fmt
	dataSize   int64 // declared data size; 0 means len(payload)
	riffSize   int64 // declared riff size; 0 means correct
}

func le16(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }
func le32(v int) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

// rawChunk encodes one RIFF chunk with a pad byte after an odd body.
func rawChunk(id string, body []byte) []byte {
	b := append([]byte(id), le32(len(body))...)
	b = append(b, body...)
	if len(body)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

// pcmBytes encodes interleaved samples little-endian; 8-bit samples are
// given signed and stored unsigned (+128).
func pcmBytes(bits int, samples []int32) []byte {
	var b []byte
	for _, s := range samples {
		switch bits {
		case 8:
			b = append(b, byte(int(s)+128))
		case 16:
			b = binary.LittleEndian.AppendUint16(b, uint16(int16(s)))
		case 24:
			u := uint32(s)
			b = append(b, byte(u), byte(u>>8), byte(u>>16))
		case 32:
			b = binary.LittleEndian.AppendUint32(b, uint32(s))
		}
	}
	return b
}

func makeWAV(s wavSpec) []byte {
	if s.format == 0 {
		s.format = 1
	}
	ba := s.blockAlign
	if ba == 0 {
		ba = s.channels * s.bits / 8
	} else if ba == -1 {
		ba = 0
	}
	fmtBody := le16(int(s.format))
	fmtBody = append(fmtBody, le16(s.channels)...)
	fmtBody = append(fmtBody, le32(s.rate)...)
	fmtBody = append(fmtBody, le32(s.rate*ba)...)
	fmtBody = append(fmtBody, le16(ba)...)
	fmtBody = append(fmtBody, le16(s.bits)...)
	fmtBody = append(fmtBody, s.fmtExtra...)
	payload := s.dataBytes
	if payload == nil {
		payload = pcmBytes(s.bits, s.samples)
	}
	dataChunk := rawChunk("data", payload)
	if s.dataSize > 0 {
		binary.LittleEndian.PutUint32(dataChunk[4:8], uint32(s.dataSize))
	}
	var body []byte
	body = append(body, "WAVE"...)
	body = append(body, s.before...)
	if s.dataFirst && !s.noData {
		body = append(body, dataChunk...)
	}
	if !s.noFmt {
		body = append(body, rawChunk("fmt ", fmtBody)...)
	}
	body = append(body, s.between...)
	if !s.dataFirst && !s.noData {
		body = append(body, dataChunk...)
	}
	body = append(body, s.after...)
	size := len(body)
	if s.riffSize != 0 {
		size = int(s.riffSize)
	}
	out := append([]byte("RIFF"), le32(size)...)
	return append(out, body...)
}

// sine returns n samples of amp*sin(2 pi freq t) at rate, quantised to
// bits (signed), repeated on every channel.
func sine(n, rate, channels, bits int, freq, amp float64) []int32 {
	full := float64(int64(1)<<(bits-1)) - 1
	out := make([]int32, 0, n*channels)
	for i := range n {
		v := int32(math.Round(amp * full * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
		for range channels {
			out = append(out, v)
		}
	}
	return out
}

func sineWAV(seconds float64, rate, channels, bits int, freq, amp float64) []byte {
	n := int(seconds * float64(rate))
	return makeWAV(wavSpec{channels: channels, rate: rate, bits: bits, samples: sine(n, rate, channels, bits, freq, amp)})
}

package preprocess

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/go-audio/audio"
	"github.com/go-audio/wav"
)

// WAV format tags (the first field of the fmt chunk).
const (
	wavFormatPCM        = 0x0001
	wavFormatExtensible = 0xFFFE
)

// pcmSubformat is KSDATAFORMAT_SUBTYPE_PCM, the GUID that marks integer PCM
// in a WAVE_FORMAT_EXTENSIBLE fmt chunk.
var pcmSubformat = [16]byte{0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71}

// wavInfo is what parseWAV learned from a WAV file's chunks.
type wavInfo struct {
	channels, rate, bits int
	blockAlign           int // bytes per sample frame: channels*bits/8
	dataOff, dataLen     int // the data chunk's payload within the file
}

// frames returns the number of sample frames in the data chunk.
func (w wavInfo) frames() int { return w.dataLen / w.blockAlign }

// audioFormatName names a non-WAV upload from its magic bytes, "" if
// unrecognised.
func audioFormatName(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte("RIFX")):
		return "big-endian wav (RIFX)"
	case bytes.HasPrefix(data, []byte("RF64")), bytes.HasPrefix(data, []byte("BW64")):
		return "64-bit wav (RF64)"
	case bytes.HasPrefix(data, []byte("FORM")):
		return "aiff"
	case bytes.HasPrefix(data, []byte("OggS")):
		return "ogg"
	case bytes.HasPrefix(data, []byte("fLaC")):
		return "flac"
	case bytes.HasPrefix(data, []byte("ID3")), len(data) >= 2 && data[0] == 0xFF && data[1]&0xE0 == 0xE0:
		return "mp3"
	case len(data) >= 8 && string(data[4:8]) == "ftyp":
		return "mp4/m4a"
	case bytes.HasPrefix(data, []byte("\x1a\x45\xdf\xa3")):
		return "webm/matroska"
	case bytes.HasPrefix(data, []byte("caff")):
		return "caf"
	case bytes.HasPrefix(data, []byte(".snd")):
		return "au"
	}
	if f := imageFormat(data); f != "" {
		return f + " image"
	}
	return ""
}

// wavFormatTagName names common non-PCM format tags for error messages.
func wavFormatTagName(tag uint16) string {
	switch tag {
	case 0x0002:
		return "ms adpcm"
	case 0x0003:
		return "ieee float"
	case 0x0006:
		return "a-law"
	case 0x0007:
		return "mu-law"
	case 0x0011:
		return "ima adpcm"
	case 0x0050, 0x0055:
		return "mpeg"
	}
	return "unknown"
}

// parseWAV walks the RIFF chunks of data itself, checking every declared
// size against the bytes present, and validates the fmt chunk against the
// limits. Nothing it returns can make a later decoder read past the input
// or allocate more than the input's size.
func parseWAV(data []byte, maxChannels, maxRate int) (wavInfo, error) {
	var info wavInfo
	if len(data) < 4 || string(data[:4]) != "RIFF" {
		if name := audioFormatName(data); name != "" {
			return info, fmt.Errorf("%w: %s (only pcm wav is accepted)", ErrAudioFormat, name)
		}
		if len(data) < 4 && bytes.HasPrefix([]byte("RIFF"), data) {
			return info, fmt.Errorf("%w: truncated riff header (%d bytes)", ErrAudioCorrupt, len(data))
		}
		n := min(len(data), 8)
		return info, fmt.Errorf("%w: unrecognised data starting % x (only pcm wav is accepted)", ErrAudioFormat, data[:n])
	}
	if len(data) < 12 {
		return info, fmt.Errorf("%w: truncated riff header (%d bytes)", ErrAudioCorrupt, len(data))
	}
	if form := string(data[8:12]); form != "WAVE" {
		return info, fmt.Errorf("%w: riff form %q is not WAVE (only pcm wav is accepted)", ErrAudioFormat, form)
	}
	riffSize := uint64(binary.LittleEndian.Uint32(data[4:8]))
	if riffSize < 4 {
		return info, fmt.Errorf("%w: riff size %d is smaller than its form type", ErrAudioCorrupt, riffSize)
	}
	if riffSize+8 > uint64(len(data)) {
		return info, fmt.Errorf("%w: riff size %d exceeds the %d bytes present", ErrAudioCorrupt, riffSize, len(data)-8)
	}
	end := int(riffSize) + 8 // bytes after the RIFF chunk are ignored

	var fmtBody []byte
	haveData := false
	for off := 12; off < end; {
		if end-off < 8 {
			return info, fmt.Errorf("%w: truncated chunk header at offset %d (%d bytes left)", ErrAudioCorrupt, off, end-off)
		}
		id := string(data[off : off+4])
		size := uint64(binary.LittleEndian.Uint32(data[off+4 : off+8]))
		body := off + 8
		if size > uint64(end-body) {
			return info, fmt.Errorf("%w: chunk %q at offset %d declares %d bytes, %d present", ErrAudioCorrupt, id, off, size, end-body)
		}
		next := body + int(size)
		if size%2 == 1 && next < end {
			next++ // pad byte; a missing pad after the last chunk is tolerated
		}
		switch id {
		case "fmt ":
			if fmtBody != nil {
				return info, fmt.Errorf("%w: second fmt chunk at offset %d", ErrAudioCorrupt, off)
			}
			fmtBody = data[body : body+int(size)]
		case "data":
			if haveData {
				return info, fmt.Errorf("%w: second data chunk at offset %d", ErrAudioCorrupt, off)
			}
			haveData = true
			info.dataOff, info.dataLen = body, int(size)
		}
		off = next
	}
	if fmtBody == nil {
		return info, fmt.Errorf("%w: no fmt chunk", ErrAudioCorrupt)
	}
	if !haveData {
		return info, fmt.Errorf("%w: no data chunk", ErrAudioCorrupt)
	}
	if err := info.parseFmt(fmtBody, maxChannels, maxRate); err != nil {
		return info, err
	}
	if info.dataLen%info.blockAlign != 0 {
		return info, fmt.Errorf("%w: data chunk of %d bytes is not a whole number of %d-byte frames", ErrAudioCorrupt, info.dataLen, info.blockAlign)
	}
	return info, nil
}

// parseFmt validates a fmt chunk body and fills channels, rate, bits and
// blockAlign.
func (info *wavInfo) parseFmt(b []byte, maxChannels, maxRate int) error {
	if len(b) < 16 {
		return fmt.Errorf("%w: fmt chunk of %d bytes, need 16", ErrAudioCorrupt, len(b))
	}
	le := binary.LittleEndian
	tag := le.Uint16(b[0:2])
	channels := int(le.Uint16(b[2:4]))
	rate := le.Uint32(b[4:8])
	blockAlign := int(le.Uint16(b[12:14]))
	bits := int(le.Uint16(b[14:16]))
	switch tag {
	case wavFormatPCM:
	case wavFormatExtensible:
		if len(b) < 40 {
			return fmt.Errorf("%w: extensible fmt chunk of %d bytes, need 40", ErrAudioCorrupt, len(b))
		}
		if cb := le.Uint16(b[16:18]); cb < 22 {
			return fmt.Errorf("%w: extensible fmt chunk with extension size %d, need 22", ErrAudioCorrupt, cb)
		}
		if sub := [16]byte(b[24:40]); sub != pcmSubformat {
			return fmt.Errorf("%w: extensible wav with sub-format % x, only integer pcm is accepted", ErrAudioFormat, sub[:])
		}
		if valid := int(le.Uint16(b[18:20])); valid > bits {
			return fmt.Errorf("%w: %d valid bits in %d-bit samples", ErrAudioCorrupt, valid, bits)
		}
	default:
		return fmt.Errorf("%w: wav format tag 0x%04x (%s), only integer pcm (1) is accepted", ErrAudioFormat, tag, wavFormatTagName(tag))
	}
	if channels < 1 || channels > maxChannels {
		return fmt.Errorf("%w: %d channels, accepted 1..%d", ErrAudioFormat, channels, maxChannels)
	}
	if rate < 1 || uint64(rate) > uint64(maxRate) {
		return fmt.Errorf("%w: sample rate %d Hz, accepted 1..%d", ErrAudioFormat, rate, maxRate)
	}
	switch bits {
	case 8, 16, 24, 32:
	default:
		return fmt.Errorf("%w: %d bits per sample, accepted 8, 16, 24, 32", ErrAudioFormat, bits)
	}
	if want := channels * bits / 8; blockAlign != want {
		return fmt.Errorf("%w: block align %d, %d channels of %d bits need %d", ErrAudioCorrupt, blockAlign, channels, bits, want)
	}
	info.channels, info.rate, info.bits, info.blockAlign = channels, int(rate), bits, blockAlign
	return nil
}

// canonicalWAV is an io.ReadSeeker over a minimal WAV file: a 44-byte
// header (RIFF, a 16-byte PCM fmt chunk, a data chunk header) followed by
// a slice of the original data chunk, without copying it. The wav
// decoder reads this instead of the upload, so it sees only chunks that
// parseWAV has validated (its own chunk walker trusts declared sizes).
type canonicalWAV struct {
	header [44]byte
	data   []byte
	pos    int64
}

func newCanonicalWAV(info wavInfo, pcm []byte) *canonicalWAV {
	r := &canonicalWAV{data: pcm}
	h := r.header[:]
	le := binary.LittleEndian
	copy(h[0:4], "RIFF")
	le.PutUint32(h[4:8], uint32(36+len(pcm)))
	copy(h[8:16], "WAVEfmt ")
	le.PutUint32(h[16:20], 16)
	le.PutUint16(h[20:22], wavFormatPCM)
	le.PutUint16(h[22:24], uint16(info.channels))
	le.PutUint32(h[24:28], uint32(info.rate))
	le.PutUint32(h[28:32], uint32(info.rate*info.blockAlign))
	le.PutUint16(h[32:34], uint16(info.blockAlign))
	le.PutUint16(h[34:36], uint16(info.bits))
	copy(h[36:40], "data")
	le.PutUint32(h[40:44], uint32(len(pcm)))
	return r
}

func (r *canonicalWAV) size() int64 { return int64(len(r.header) + len(r.data)) }

// Read fills p across the header and data boundary, so that one Read
// returns as much as is asked for while bytes remain.
func (r *canonicalWAV) Read(p []byte) (int, error) {
	if r.pos >= r.size() {
		return 0, io.EOF
	}
	n := 0
	if r.pos < int64(len(r.header)) {
		n = copy(p, r.header[r.pos:])
		r.pos += int64(n)
	}
	if n < len(p) && r.pos >= int64(len(r.header)) {
		m := copy(p[n:], r.data[r.pos-int64(len(r.header)):])
		r.pos += int64(m)
		n += m
	}
	return n, nil
}

func (r *canonicalWAV) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.size() + offset
	default:
		return 0, errors.New("canonical wav: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("canonical wav: negative position")
	}
	r.pos = abs
	return abs, nil
}

// pcmBlockSamples is how many interleaved samples are decoded per call to
// the wav decoder; the decoder allocates a byte buffer of this many samples
// per call, so it bounds the decoder's memory whatever the clip length.
const pcmBlockSamples = 1 << 14

// decodePCM decodes the first len(mono) sample frames of the data chunk
// with the go-audio/wav decoder, averages the channels and scales to
// [-1, 1] into mono.
func decodePCM(data []byte, info wavInfo, mono []float64) error {
	pcm := data[info.dataOff : info.dataOff+len(mono)*info.blockAlign]
	dec := wav.NewDecoder(newCanonicalWAV(info, pcm))
	if err := dec.FwdToPCM(); err != nil {
		return fmt.Errorf("%w: wav decoder: %w", ErrAudioCorrupt, err)
	}
	if dec.Err() != nil {
		return fmt.Errorf("%w: wav decoder: %w", ErrAudioCorrupt, dec.Err())
	}
	if int(dec.NumChans) != info.channels || int(dec.BitDepth) != info.bits {
		return fmt.Errorf("%w: wav decoder read %d channels of %d bits, expected %d of %d", ErrAudioCorrupt, dec.NumChans, dec.BitDepth, info.channels, info.bits)
	}

	var bias int // 8-bit PCM is unsigned
	if info.bits == 8 {
		bias = 128
	}
	scale := 1 / (float64(info.channels) * float64(int64(1)<<(info.bits-1)))
	block := make([]int, min(pcmBlockSamples/info.channels*info.channels, len(mono)*info.channels))
	if len(block) == 0 {
		block = make([]int, info.channels)
	}
	buf := &audio.IntBuffer{}
	total := len(mono) * info.channels
	frame, ch, acc := 0, 0, int64(0)
	for done := 0; done < total; {
		buf.Data = block[:min(len(block), total-done)]
		n, err := dec.PCMBuffer(buf)
		if err != nil {
			return fmt.Errorf("%w: wav decoder: %w", ErrAudioCorrupt, err)
		}
		if n <= 0 {
			return fmt.Errorf("%w: wav decoder stopped after %d of %d samples", ErrAudioCorrupt, done, total)
		}
		for _, v := range buf.Data[:n] {
			acc += int64(v - bias)
			if ch++; ch == info.channels {
				mono[frame] = float64(acc) * scale
				frame++
				ch, acc = 0, 0
			}
		}
		done += n
	}
	return nil
}

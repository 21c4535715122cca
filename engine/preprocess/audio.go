package preprocess

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/dsp/fourier"
)

// Defaults of AudioConfig, used for zero-valued fields.
const (
	DefaultSampleRate = 16000
	DefaultNFFT       = 400
	DefaultHopLength  = 160
	DefaultNMels      = 64
	DefaultLogOffset  = 1e-6
	// DefaultMaxSeconds is the clip length kept after resampling; longer
	// clips are truncated, as the recipe says.
	DefaultMaxSeconds = 10.0
	// DefaultMaxChannels bounds the channel count (7.1 is 8 channels).
	DefaultMaxChannels = 8
	// DefaultMaxSourceRate bounds the declared sample rate of the upload
	// (192 kHz is the highest rate in common use).
	DefaultMaxSourceRate = 192000
	// DefaultMaxAudioBytes (20 MiB) bounds the whole WAV file, and so the
	// data chunk: about 65 s of 16-bit stereo at 80 kHz, more than the
	// 10 s kept.
	DefaultMaxAudioBytes = 20 << 20
)

// Upper bounds that keep a bad configuration from asking for absurd
// buffers; no bundle comes near them.
const (
	maxConfigRate     = 384000
	maxConfigNFFT     = 1 << 16
	maxConfigMels     = 1024
	maxConfigSamples  = 1 << 26 // resampled samples kept: MaxSeconds*SampleRate
	maxConfigChannels = 1 << 16
)

// AudioConfig is the audio recipe of a bundle plus the limits applied to
// untrusted uploads. The zero value is the default recipe (16 kHz, 400-point
// FFT and window, hop 160, 64 mels from 0 to 8000 Hz, log offset 1e-6,
// 10 s) with the default limits; every zero field takes its default.
//
// An AudioConfig computes its window and filterbank on each use through a
// small shared cache (see LogMel); a server should build one
// AudioFeaturizer with NewAudioFeaturizer and keep it.
type AudioConfig struct {
	// SampleRate is the rate audio is resampled to, in Hz; default 16000.
	SampleRate int
	// NFFT is the FFT length (NFFT/2+1 frequency bins); default 400.
	NFFT int
	// WinLength is the frame and Hann window length in samples, at most
	// NFFT (frames are zero-padded to NFFT); default NFFT.
	WinLength int
	// HopLength is the distance between frames in samples; default 160.
	HopLength int
	// NMels is the number of mel bands; default 64.
	NMels int
	// FMin and FMax bound the mel filterbank in Hz. FMin defaults to 0;
	// FMax 0 means SampleRate/2 (8000 Hz by default).
	FMin, FMax float64
	// LogOffset is added to the mel power before the natural log; default
	// 1e-6.
	LogOffset float64
	// MaxSeconds is the length kept after resampling, in seconds; longer
	// clips are truncated. Default 10.
	MaxSeconds float64
	// MaxChannels bounds the channel count of the upload; default 8.
	MaxChannels int
	// MaxSourceRate bounds the sample rate of the upload in Hz; default
	// 192000.
	MaxSourceRate int
	// MaxBytes bounds the size of the WAV file; default 20 MiB.
	MaxBytes int
}

// withDefaults returns c with every zero field replaced by its default.
func (c AudioConfig) withDefaults() AudioConfig {
	if c.SampleRate == 0 {
		c.SampleRate = DefaultSampleRate
	}
	if c.NFFT == 0 {
		c.NFFT = DefaultNFFT
	}
	if c.WinLength == 0 {
		c.WinLength = c.NFFT
	}
	if c.HopLength == 0 {
		c.HopLength = DefaultHopLength
	}
	if c.NMels == 0 {
		c.NMels = DefaultNMels
	}
	if c.FMax == 0 {
		c.FMax = float64(c.SampleRate) / 2
	}
	if c.LogOffset == 0 {
		c.LogOffset = DefaultLogOffset
	}
	if c.MaxSeconds == 0 {
		c.MaxSeconds = DefaultMaxSeconds
	}
	if c.MaxChannels == 0 {
		c.MaxChannels = DefaultMaxChannels
	}
	if c.MaxSourceRate == 0 {
		c.MaxSourceRate = DefaultMaxSourceRate
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxAudioBytes
	}
	return c
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Validate reports whether c, after defaults, can be used.
func (c AudioConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.SampleRate < 1 || c.SampleRate > maxConfigRate:
		return fmt.Errorf("%w: sample rate %d outside 1..%d", ErrConfig, c.SampleRate, maxConfigRate)
	case c.NFFT < 2 || c.NFFT > maxConfigNFFT:
		return fmt.Errorf("%w: n_fft %d outside 2..%d", ErrConfig, c.NFFT, maxConfigNFFT)
	case c.WinLength < 1 || c.WinLength > c.NFFT:
		return fmt.Errorf("%w: win_length %d outside 1..n_fft (%d)", ErrConfig, c.WinLength, c.NFFT)
	case c.HopLength < 1:
		return fmt.Errorf("%w: hop_length %d must be positive", ErrConfig, c.HopLength)
	case c.NMels < 1 || c.NMels > maxConfigMels:
		return fmt.Errorf("%w: n_mels %d outside 1..%d", ErrConfig, c.NMels, maxConfigMels)
	case !finite(c.FMin) || !finite(c.FMax) || c.FMin < 0 || c.FMax <= c.FMin:
		return fmt.Errorf("%w: mel range f_min %v, f_max %v (need 0 <= f_min < f_max)", ErrConfig, c.FMin, c.FMax)
	case !finite(c.LogOffset) || c.LogOffset <= 0:
		return fmt.Errorf("%w: log_offset %v must be positive", ErrConfig, c.LogOffset)
	case !finite(c.MaxSeconds) || c.MaxSeconds <= 0 || c.MaxSeconds*float64(c.SampleRate) > maxConfigSamples:
		return fmt.Errorf("%w: max_seconds %v outside (0, %d samples]", ErrConfig, c.MaxSeconds, maxConfigSamples)
	case math.Floor(c.MaxSeconds*float64(c.SampleRate)) < 1:
		return fmt.Errorf("%w: max_seconds %v keeps no sample at %d Hz", ErrConfig, c.MaxSeconds, c.SampleRate)
	case c.MaxChannels < 1 || c.MaxChannels > maxConfigChannels:
		return fmt.Errorf("%w: max channels %d outside 1..%d", ErrConfig, c.MaxChannels, maxConfigChannels)
	case c.MaxSourceRate < 1:
		return fmt.Errorf("%w: max source rate %d must be positive", ErrConfig, c.MaxSourceRate)
	case c.MaxBytes < 1:
		return fmt.Errorf("%w: max bytes %d must be positive", ErrConfig, c.MaxBytes)
	}
	return nil
}

// featurizerCache holds the featurizers built by AudioConfig.LogMel, keyed
// by the config after defaults. Bundles use one or two configs; the cache
// stops growing at maxCachedFeaturizers so that a caller cycling through
// configs cannot grow it without bound.
var (
	featurizerCache      sync.Map // AudioConfig -> *AudioFeaturizer
	featurizerCacheSize  atomic.Int32
	maxCachedFeaturizers = int32(16)
)

// LogMel is NewAudioFeaturizer(c) followed by LogMel, with the featurizer
// cached per config. See AudioFeaturizer.LogMel.
func (c AudioConfig) LogMel(data []byte) (logMel []float32, frames int, err error) {
	f, err := cachedFeaturizer(c)
	if err != nil {
		return nil, 0, err
	}
	return f.LogMel(data)
}

func cachedFeaturizer(c AudioConfig) (*AudioFeaturizer, error) {
	c = c.withDefaults()
	if v, ok := featurizerCache.Load(c); ok {
		return v.(*AudioFeaturizer), nil
	}
	f, err := NewAudioFeaturizer(c) // validates, so c has no NaN
	if err != nil {
		return nil, err
	}
	if featurizerCacheSize.Load() < maxCachedFeaturizers {
		if v, loaded := featurizerCache.LoadOrStore(c, f); loaded {
			return v.(*AudioFeaturizer), nil
		}
		featurizerCacheSize.Add(1)
	}
	return f, nil
}

// AudioFeaturizer computes log-mel spectrograms for one AudioConfig. The
// Hann window and the mel filterbank are computed once by
// NewAudioFeaturizer; FFT plans and scratch buffers are pooled. It is safe
// for concurrent use.
type AudioFeaturizer struct {
	cfg        AudioConfig
	window     []float64   // periodic Hann, len WinLength
	filters    []melFilter // len NMels
	maxSamples int         // floor(MaxSeconds*SampleRate)
	work       sync.Pool   // *audioWork
}

// melFilter is one triangle of the filterbank, stored sparsely: weights
// for the FFT bins first .. first+len(weights)-1.
type melFilter struct {
	first   int
	weights []float64
}

// audioWork is the scratch of one LogMel call.
type audioWork struct {
	fft    *fourier.FFT
	frame  []float64    // len NFFT; [WinLength:] stays zero
	coeffs []complex128 // len NFFT/2+1
	power  []float64    // len NFFT/2+1
	mono   []float64    // source samples, mixed down and scaled
	signal []float64    // resampled
}

// NewAudioFeaturizer validates cfg (after defaults) and precomputes its
// window and mel filterbank.
func NewAudioFeaturizer(cfg AudioConfig) (*AudioFeaturizer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &AudioFeaturizer{
		cfg:        cfg,
		window:     hannPeriodic(cfg.WinLength),
		maxSamples: int(math.Floor(cfg.MaxSeconds * float64(cfg.SampleRate))),
	}
	f.filters = sparseFilters(melFilterbank(cfg.SampleRate, cfg.NFFT, cfg.NMels, cfg.FMin, cfg.FMax))
	f.work.New = func() any {
		bins := cfg.NFFT/2 + 1
		return &audioWork{
			fft:    fourier.NewFFT(cfg.NFFT),
			frame:  make([]float64, cfg.NFFT),
			coeffs: make([]complex128, bins),
			power:  make([]float64, bins),
		}
	}
	return f, nil
}

// Config returns the featurizer's configuration, defaults filled in.
func (f *AudioFeaturizer) Config() AudioConfig { return f.cfg }

// hannPeriodic returns the periodic Hann window 0.5 - 0.5 cos(2 pi n / n).
func hannPeriodic(n int) []float64 {
	w := make([]float64, n)
	for i := range w {
		w[i] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(n))
	}
	return w
}

// hzToMel and melToHz are the HTK mel scale.
func hzToMel(f float64) float64 { return 2595 * math.Log10(1+f/700) }
func melToHz(m float64) float64 { return 700 * (math.Pow(10, m/2595) - 1) }

// melFilterbank returns the dense HTK filterbank, [nMels][nFFT/2+1]:
// triangles with corners at nMels+2 frequencies evenly spaced in mel from
// fMin to fMax, peak 1, unnormalised, evaluated at bin frequencies
// k*sampleRate/nFFT.
func melFilterbank(sampleRate, nFFT, nMels int, fMin, fMax float64) [][]float64 {
	bins := nFFT/2 + 1
	lo, hi := hzToMel(fMin), hzToMel(fMax)
	pts := make([]float64, nMels+2)
	for i := range pts {
		pts[i] = melToHz(lo + (hi-lo)*float64(i)/float64(nMels+1))
	}
	fb := make([][]float64, nMels)
	for m := range fb {
		fb[m] = make([]float64, bins)
		left, centre, right := pts[m], pts[m+1], pts[m+2]
		for k := range bins {
			fk := float64(k) * float64(sampleRate) / float64(nFFT)
			up := (fk - left) / (centre - left)
			down := (right - fk) / (right - centre)
			fb[m][k] = max(0, min(up, down))
		}
	}
	return fb
}

// sparseFilters keeps the non-zero span of each dense filter.
func sparseFilters(fb [][]float64) []melFilter {
	out := make([]melFilter, len(fb))
	for m, row := range fb {
		first, last := -1, -1
		for k, w := range row {
			if w != 0 {
				if first < 0 {
					first = k
				}
				last = k
			}
		}
		if first >= 0 {
			out[m] = melFilter{first: first, weights: row[first : last+1]}
		}
	}
	return out
}

// ResampledLen returns how many samples the recipe's linear-interpolation
// resampler produces from n samples at srcRate: floor((n-1)*dstRate/srcRate)+1,
// and 0 for n = 0. It does not apply MaxSeconds.
func ResampledLen(n, srcRate, dstRate int) int {
	if n <= 0 {
		return 0
	}
	return int(int64(n-1)*int64(dstRate)/int64(srcRate)) + 1
}

// FrameCount returns the number of frames of a signal of n samples:
// 1 + floor((n-winLength)/hopLength), and 1 when n < winLength (the clip is
// padded to one window).
func FrameCount(n, winLength, hopLength int) int {
	if n < winLength {
		return 1
	}
	return 1 + (n-winLength)/hopLength
}

// LogMel decodes a PCM WAV file and returns its log-mel spectrogram as a
// row-major [frames, NMels] float32 slice. The recipe (docs/BUNDLE.md):
// average the channels; scale integer samples to [-1, 1] by dividing by
// 2^(bits-1) (8-bit WAV is unsigned and is first centred by subtracting
// 128); resample to SampleRate by linear interpolation at source positions
// j*srcRate/SampleRate; keep the first floor(MaxSeconds*SampleRate)
// samples; cut frames of WinLength samples every HopLength samples (one
// zero-padded frame for shorter clips); apply the periodic Hann window;
// take |rfft(frame, NFFT)|^2; apply the HTK mel filterbank;
// log(mel + LogOffset).
//
// Only the source samples that survive the truncation are decoded, so the
// cost of a long upload is bounded by MaxSeconds, not by its length.
//
// Errors wrap ErrEmptyInput, ErrAudioTooLarge, ErrAudioFormat,
// ErrAudioCorrupt or ErrAudioEmpty.
func (f *AudioFeaturizer) LogMel(data []byte) (logMel []float32, frames int, err error) {
	return f.AppendLogMel(nil, data)
}

// AppendLogMel is LogMel appending the spectrogram to dst, for building
// batches. On error dst is returned unchanged.
func (f *AudioFeaturizer) AppendLogMel(dst []float32, data []byte) ([]float32, int, error) {
	c := &f.cfg
	if len(data) == 0 {
		return dst, 0, fmt.Errorf("%w: no audio data", ErrEmptyInput)
	}
	if len(data) > c.MaxBytes {
		return dst, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrAudioTooLarge, len(data), c.MaxBytes)
	}
	info, err := parseWAV(data, c.MaxChannels, c.MaxSourceRate)
	if err != nil {
		return dst, 0, err
	}
	n := info.frames()
	if n == 0 {
		return dst, 0, fmt.Errorf("%w: data chunk is empty", ErrAudioEmpty)
	}

	// Output length after resampling and truncation, and the source frames
	// it reads: output j interpolates between source frames i and i+1,
	// i = floor(j*src/dst).
	src, dstRate := int64(info.rate), int64(c.SampleRate)
	m := min(ResampledLen(n, info.rate, c.SampleRate), f.maxSamples)
	need := min(n, int((int64(m-1)*src)/dstRate)+2)

	w := f.work.Get().(*audioWork)
	defer f.work.Put(w)

	w.mono = growFloat64(w.mono[:0], need)
	if err := decodePCM(data, info, w.mono); err != nil {
		return dst, 0, err
	}
	w.signal = growFloat64(w.signal[:0], max(m, c.WinLength))
	resampleLinear(w.signal[:m], w.mono, src, dstRate)
	clear(w.signal[m:]) // zero padding of a clip shorter than one window

	frames := FrameCount(m, c.WinLength, c.HopLength)
	start := len(dst)
	out := growFloat32(dst, frames*c.NMels)
	f.spectrogram(w, w.signal[:max(m, c.WinLength)], frames, out[start:])
	return out, frames, nil
}

// growFloat64 returns s resized to n elements, reusing its array when it
// is large enough. The contents are unspecified.
func growFloat64(s []float64, n int) []float64 {
	if n <= cap(s) {
		return s[:n]
	}
	return make([]float64, n)
}

// resampleLinear fills out with the signal x interpolated linearly at
// positions j*src/dst, in the form numpy.interp uses: x[i] + (x[i+1]-x[i])*t.
// Positions are exact: i and the fraction come from integer arithmetic.
func resampleLinear(out, x []float64, src, dst int64) {
	if src == dst {
		copy(out, x)
		return
	}
	for j := range out {
		p := int64(j) * src
		i := p / dst
		rem := p % dst
		if rem == 0 {
			out[j] = x[i]
			continue
		}
		t := float64(rem) / float64(dst)
		out[j] = x[i] + (x[i+1]-x[i])*t
	}
}

// spectrogram writes frames x NMels log-mel values of signal into out.
func (f *AudioFeaturizer) spectrogram(w *audioWork, signal []float64, frames int, out []float32) {
	c := &f.cfg
	win := f.window
	for t := range frames {
		seg := signal[t*c.HopLength : t*c.HopLength+c.WinLength]
		for i, v := range seg {
			w.frame[i] = v * win[i]
		}
		w.fft.Coefficients(w.coeffs, w.frame)
		for k, z := range w.coeffs {
			re, im := real(z), imag(z)
			w.power[k] = re*re + im*im
		}
		row := out[t*c.NMels : (t+1)*c.NMels]
		for m, flt := range f.filters {
			var s float64
			p := w.power[flt.first : flt.first+len(flt.weights)]
			for k, wt := range flt.weights {
				s += wt * p[k]
			}
			row[m] = float32(math.Log(s + c.LogOffset))
		}
	}
}

// Package preprocess turns untrusted image and audio uploads into the float32
// tensors that the bundle's image and audio encoders take, following the
// "Preprocessing recipes" of docs/BUNDLE.md.
//
// Images (ImageConfig) are JPEG or PNG, resized so that the shorter side is
// Size, centre-cropped to Size x Size and normalised per channel into a CHW
// tensor. Audio (AudioConfig, AudioFeaturizer) is PCM WAV, mixed to mono,
// resampled, truncated and turned into a [frames, n_mels] log-mel
// spectrogram.
//
// Every input is treated as hostile: sizes, dimensions, chunk lengths and
// formats are checked against the bytes actually present and against the
// configured limits before any decoder allocates memory in proportion to
// what the input declares. All failures wrap one of the sentinel errors
// below, so that a server can map them to a status code in one place:
//
//	ErrEmptyInput, ErrImageFormat, ErrImageDecode,
//	ErrAudioFormat, ErrAudioCorrupt, ErrAudioEmpty  -> 400 Bad Request
//	ErrImageTooLarge, ErrAudioTooLarge              -> 413 Content Too Large
//	ErrConfig, ErrBufferSize                        -> 500 (a programming or bundle error)
package preprocess

import "errors"

// Sentinel errors. Errors returned by this package wrap exactly one of them
// and add detail (the format found, the limit exceeded, the decoder's own
// message).
var (
	// ErrEmptyInput reports an upload with no bytes at all.
	ErrEmptyInput = errors.New("preprocess: empty input")

	// ErrImageFormat reports an image that is not JPEG or PNG (the message
	// names the format that was recognised, if any).
	ErrImageFormat = errors.New("preprocess: unsupported image format")
	// ErrImageTooLarge reports an image over MaxBytes, MaxWidth, MaxHeight or
	// MaxPixels.
	ErrImageTooLarge = errors.New("preprocess: image too large")
	// ErrImageDecode reports a JPEG or PNG that the decoder rejected
	// (truncated or corrupt data, zero dimensions).
	ErrImageDecode = errors.New("preprocess: cannot decode image")

	// ErrAudioFormat reports audio that is not a WAV file this package
	// accepts: not RIFF/WAVE, not integer PCM, an unsupported sample width,
	// or a channel count or sample rate outside the configured range.
	ErrAudioFormat = errors.New("preprocess: unsupported audio format")
	// ErrAudioCorrupt reports a WAV file whose structure is inconsistent:
	// truncated headers, chunk sizes beyond the end of the file, a missing
	// or duplicated fmt or data chunk, a data size that is not a whole
	// number of sample frames.
	ErrAudioCorrupt = errors.New("preprocess: malformed wav")
	// ErrAudioTooLarge reports a WAV file over MaxBytes.
	ErrAudioTooLarge = errors.New("preprocess: audio too large")
	// ErrAudioEmpty reports a well-formed WAV file with no sample frames.
	ErrAudioEmpty = errors.New("preprocess: audio has no samples")

	// ErrConfig reports an ImageConfig or AudioConfig that cannot be used.
	ErrConfig = errors.New("preprocess: invalid config")
	// ErrBufferSize reports a destination slice of the wrong length.
	ErrBufferSize = errors.New("preprocess: destination has wrong length")
)

package preprocess

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"

	"github.com/disintegration/imaging"
)

// Defaults of ImageConfig, used for zero-valued fields.
const (
	// DefaultImageSize is the side of the square the image encoder takes.
	DefaultImageSize = 224
	// DefaultMaxImageWidth and DefaultMaxImageHeight bound each side. A
	// decoded image costs 4 bytes per pixel (more for 16-bit PNGs), and
	// the pixel limit below is the real memory bound; the side limits
	// reject absurd aspect ratios early.
	DefaultMaxImageWidth  = 8192
	DefaultMaxImageHeight = 8192
	// DefaultMaxImagePixels (40 megapixels) bounds the memory of one decode
	// to a few hundred MiB: the decoded image plus one full-size RGBA copy
	// for images with an alpha channel, plus the resize buffers.
	DefaultMaxImagePixels = 40_000_000
	// DefaultMaxImageBytes (20 MiB) bounds the encoded upload.
	DefaultMaxImageBytes = 20 << 20
	// DefaultMaxImageDecodeBytes bounds the memory one image's decode may allocate.
	DefaultMaxImageDecodeBytes = 256 << 20
)

// ImageNetMean and ImageNetStd are the default per-channel (R, G, B)
// normalisation constants.
var (
	ImageNetMean = [3]float32{0.485, 0.456, 0.406}
	ImageNetStd  = [3]float32{0.229, 0.224, 0.225}
)

// ImageConfig is the image recipe of a bundle plus the limits applied to
// untrusted uploads. The zero value is the default recipe (224, ImageNet
// mean and std) with the default limits; every zero field takes its
// default.
//
// Its methods do not retain data or dst and are safe for concurrent use.
type ImageConfig struct {
	// Size is the side of the output square in pixels; default 224.
	Size int
	// Mean and Std normalise each channel after scaling to [0,1]:
	// (x - Mean[c]) / Std[c]. An all-zero Std (which could never be used)
	// means "not configured": then both Mean and Std take the ImageNet
	// values. Otherwise Mean is used as given and every Std must be > 0.
	Mean, Std [3]float32
	// MaxWidth and MaxHeight bound the declared dimensions, checked
	// before the full decode; defaults 8192 and 8192.
	MaxWidth, MaxHeight int
	// MaxPixels bounds width*height, checked before the full decode;
	// default 40,000,000.
	MaxPixels int
	// MaxBytes bounds the encoded input; default 20 MiB.
	MaxBytes int
	// MaxDecodeBytes bounds the memory a decode may allocate, estimated from the header before
	// decoding (DecodeBytes: pixels times the decoded format's bytes per pixel, bit depth and
	// channels counted, plus the RGB copy formats with alpha need); default 256 MiB.
	MaxDecodeBytes int64
}

// withDefaults returns c with every zero field replaced by its default.
func (c ImageConfig) withDefaults() ImageConfig {
	if c.Size == 0 {
		c.Size = DefaultImageSize
	}
	if c.Std == ([3]float32{}) {
		c.Mean, c.Std = ImageNetMean, ImageNetStd
	}
	if c.MaxWidth == 0 {
		c.MaxWidth = DefaultMaxImageWidth
	}
	if c.MaxHeight == 0 {
		c.MaxHeight = DefaultMaxImageHeight
	}
	if c.MaxPixels == 0 {
		c.MaxPixels = DefaultMaxImagePixels
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxImageBytes
	}
	if c.MaxDecodeBytes == 0 {
		c.MaxDecodeBytes = DefaultMaxImageDecodeBytes
	}
	return c
}

// Validate reports whether c, after defaults, can be used.
func (c ImageConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Size < 1 || c.Size > 4096:
		return fmt.Errorf("%w: image size %d outside 1..4096", ErrConfig, c.Size)
	case c.MaxWidth < 1 || c.MaxHeight < 1 || c.MaxPixels < 1 || c.MaxBytes < 1 || c.MaxDecodeBytes < 1:
		return fmt.Errorf("%w: image limits must be positive", ErrConfig)
	}
	for i, s := range c.Std {
		if !(s > 0) { // also rejects NaN
			return fmt.Errorf("%w: image std[%d] = %v, must be > 0", ErrConfig, i, s)
		}
		if m := c.Mean[i]; m != m {
			return fmt.Errorf("%w: image mean[%d] is NaN", ErrConfig, i)
		}
	}
	return nil
}

// Len returns the number of float32 values of one image tensor,
// 3*Size*Size (after defaults).
func (c ImageConfig) Len() int {
	c = c.withDefaults()
	return 3 * c.Size * c.Size
}

// Pixels decodes one JPEG or PNG image and writes its normalised
// [3, Size, Size] tensor (CHW, channel order R, G, B) into dst, which must
// have length Len(). The recipe (docs/BUNDLE.md): convert to RGB, dropping
// any alpha channel; resize with the bilinear filter so that the shorter side
// is Size and the longer one is round(Size*long/short); centre-crop to
// Size x Size (offset floor((long-Size)/2)); scale to [0,1]; normalise with
// Mean and Std. EXIF orientation is not applied.
//
// Errors wrap ErrEmptyInput, ErrImageFormat, ErrImageTooLarge,
// ErrImageDecode, ErrConfig or ErrBufferSize. On error dst may have been
// partly written.
func (c ImageConfig) Pixels(data []byte, dst []float32) error {
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		return err
	}
	if n := 3 * c.Size * c.Size; len(dst) != n {
		return fmt.Errorf("%w: image tensor needs %d float32, got %d", ErrBufferSize, n, len(dst))
	}
	img, err := c.decode(data)
	if err != nil {
		return err
	}
	c.normalise(c.resizeCrop(img), dst)
	return nil
}

// AppendPixels is Pixels for building batches: it appends the image's
// tensor to dst and returns the extended slice. AppendPixels(nil, data)
// allocates a new tensor. On error dst is returned unchanged.
func (c ImageConfig) AppendPixels(dst []float32, data []byte) ([]float32, error) {
	n := c.Len()
	start := len(dst)
	out := growFloat32(dst, n)
	if err := c.Pixels(data, out[start:start+n]); err != nil {
		return dst, err
	}
	return out, nil
}

// growFloat32 returns dst extended by n elements, reallocating at most once.
func growFloat32(dst []float32, n int) []float32 {
	if n <= cap(dst)-len(dst) {
		return dst[:len(dst)+n]
	}
	out := make([]float32, len(dst)+n)
	copy(out, dst)
	return out
}

// imageFormat names the format of data from its magic bytes: "jpeg" and
// "png" are accepted; other recognised formats are named so that the error
// can say what was uploaded; "" means unrecognised.
func imageFormat(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte("\xff\xd8\xff")):
		return "jpeg"
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return "png"
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return "gif"
	case bytes.HasPrefix(data, []byte("BM")):
		return "bmp"
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return "webp"
	case bytes.HasPrefix(data, []byte("II*\x00")), bytes.HasPrefix(data, []byte("MM\x00*")):
		return "tiff"
	case len(data) >= 12 && string(data[4:8]) == "ftyp":
		switch string(data[8:12]) {
		case "avif", "avis":
			return "avif"
		case "heic", "heix", "hevc", "heim", "heis", "mif1", "msf1":
			return "heif"
		}
		return "iso media (" + fmt.Sprintf("%q", data[8:12]) + ")"
	case bytes.HasPrefix(data, []byte("\x00\x00\x01\x00")):
		return "ico"
	case bytes.HasPrefix(data, []byte("\xff\x0a")), bytes.HasPrefix(data, []byte("\x00\x00\x00\x0cJXL \r\n\x87\n")):
		return "jpeg xl"
	case bytes.HasPrefix(data, []byte("%PDF")):
		return "pdf"
	case bytes.HasPrefix(data, []byte("<svg")), bytes.HasPrefix(data, []byte("<?xml")):
		return "svg/xml"
	}
	return ""
}

// DecodeBytes reads only the image's header and returns the memory its decode would allocate
// (see decodeBytes), or the error decoding it would meet first for its format, header or
// limits (MaxBytes, MaxWidth, MaxHeight, MaxPixels, MaxDecodeBytes).
func (c ImageConfig) DecodeBytes(data []byte) (int64, error) {
	c = c.withDefaults()
	_, cfg, _, err := c.header(data)
	if err != nil {
		return 0, err
	}
	return decodeBytes(cfg, c.Size), nil
}

// decodeBytes estimates the peak allocation of decoding and resizing an image: its pixels at
// the decoder's bytes per pixel (1 gray or paletted, 2 gray16, 3 YCbCr 4:4:4 at most, 4 RGBA,
// NRGBA or CMYK, 8 for 16-bit RGBA), plus a 4-byte NRGBA copy for formats with alpha that are
// not converted in place (toRGB), plus the resize's intermediate (the long side times Size,
// NRGBA).
func decodeBytes(cfg image.Config, size int) int64 {
	px := int64(cfg.Width) * int64(cfg.Height)
	var bpp, copyBpp int64
	switch cfg.ColorModel {
	case color.GrayModel:
		bpp = 1
	case color.Gray16Model:
		bpp = 2
	case color.YCbCrModel:
		bpp = 3
	case color.NRGBAModel, color.CMYKModel:
		bpp = 4
	case color.RGBAModel:
		bpp, copyBpp = 4, 4
	case color.RGBA64Model, color.NRGBA64Model:
		bpp, copyBpp = 8, 4
	default:
		if _, ok := cfg.ColorModel.(color.Palette); ok {
			bpp = 1
		} else {
			bpp, copyBpp = 8, 4 // unknown: the widest
		}
	}
	long := int64(max(cfg.Width, cfg.Height))
	return px*(bpp+copyBpp) + 4*long*int64(size)
}

// header checks format and limits from the image's header alone (DecodeConfig), before the
// decoder allocates anything, and returns the decoder to use.
func (c ImageConfig) header(data []byte) (string, image.Config, func([]byte) (image.Image, error), error) {
	var none image.Config
	if len(data) == 0 {
		return "", none, nil, fmt.Errorf("%w: no image data", ErrEmptyInput)
	}
	if len(data) > c.MaxBytes {
		return "", none, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrImageTooLarge, len(data), c.MaxBytes)
	}
	format := imageFormat(data)
	var (
		decodeConfig func([]byte) (image.Config, error)
		decodeImage  func([]byte) (image.Image, error)
	)
	switch format {
	case "jpeg":
		decodeConfig = func(b []byte) (image.Config, error) { return jpeg.DecodeConfig(bytes.NewReader(b)) }
		decodeImage = func(b []byte) (image.Image, error) { return jpeg.Decode(bytes.NewReader(b)) }
	case "png":
		decodeConfig = func(b []byte) (image.Config, error) { return png.DecodeConfig(bytes.NewReader(b)) }
		decodeImage = func(b []byte) (image.Image, error) { return png.Decode(bytes.NewReader(b)) }
	case "":
		n := min(len(data), 8)
		return "", none, nil, fmt.Errorf("%w: unrecognised data starting % x (jpeg and png are accepted)", ErrImageFormat, data[:n])
	default:
		return "", none, nil, fmt.Errorf("%w: %s (jpeg and png are accepted)", ErrImageFormat, format)
	}

	cfg, err := decodeConfig(data)
	if err != nil {
		return "", none, nil, fmt.Errorf("%w: %s header: %w", ErrImageDecode, format, err)
	}
	if cfg.Width < 1 || cfg.Height < 1 {
		return "", none, nil, fmt.Errorf("%w: %s has empty dimensions %dx%d", ErrImageDecode, format, cfg.Width, cfg.Height)
	}
	if cfg.Width > c.MaxWidth || cfg.Height > c.MaxHeight {
		return "", none, nil, fmt.Errorf("%w: %s is %dx%d, limit %dx%d", ErrImageTooLarge, format, cfg.Width, cfg.Height, c.MaxWidth, c.MaxHeight)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > int64(c.MaxPixels) {
		return "", none, nil, fmt.Errorf("%w: %s is %dx%d = %d pixels, limit %d", ErrImageTooLarge, format, cfg.Width, cfg.Height, px, c.MaxPixels)
	}
	if need := decodeBytes(cfg, c.Size); need > c.MaxDecodeBytes {
		return "", none, nil, fmt.Errorf("%w: decoding the %dx%d %s would allocate about %d MiB, limit %d MiB", ErrImageTooLarge, cfg.Width, cfg.Height, format, need>>20, c.MaxDecodeBytes>>20)
	}
	return format, cfg, decodeImage, nil
}

// decode checks format and limits (header), then decodes the image.
func (c ImageConfig) decode(data []byte) (image.Image, error) {
	format, cfg, decodeImage, err := c.header(data)
	if err != nil {
		return nil, err
	}
	img, err := decodeImage(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrImageDecode, format, err)
	}
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		// Cannot happen with the standard decoders; checked because the
		// limits above were enforced on the header's numbers.
		return nil, fmt.Errorf("%w: %s decoded to %dx%d, header said %dx%d", ErrImageDecode, format, b.Dx(), b.Dy(), cfg.Width, cfg.Height)
	}
	return img, nil
}

// opaque reports whether every pixel of img is known to be fully opaque
// without copying it.
func opaque(img image.Image) bool {
	switch img.(type) {
	case *image.YCbCr, *image.Gray, *image.Gray16, *image.CMYK:
		return true
	}
	if o, ok := img.(interface{ Opaque() bool }); ok {
		return o.Opaque()
	}
	return false
}

// toRGB drops the alpha channel as PIL's convert("RGB") does: the straight
// (non-premultiplied) colour of every pixel is kept and alpha is set to 255.
// Resizing an image with alpha directly would weight colours by alpha,
// which is not the recipe. Opaque images are returned as they are; img is
// the decoder's fresh result, so NRGBA pixels and palettes are changed in
// place rather than copied.
func toRGB(img image.Image) image.Image {
	if opaque(img) {
		return img
	}
	switch m := img.(type) {
	case *image.NRGBA:
		for y := m.Rect.Min.Y; y < m.Rect.Max.Y; y++ {
			row := m.Pix[m.PixOffset(m.Rect.Min.X, y):m.PixOffset(m.Rect.Max.X, y)]
			for i := 3; i < len(row); i += 4 {
				row[i] = 0xff
			}
		}
		return m
	case *image.Paletted:
		pal := make(color.Palette, len(m.Palette))
		for i, c := range m.Palette {
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			n.A = 0xff
			pal[i] = n
		}
		m.Palette = pal
		return m
	}
	// imaging.Clone converts to non-premultiplied NRGBA, keeping straight
	// colours for NRGBA, NRGBA64 and paletted (PNG tRNS) sources.
	n := imaging.Clone(img)
	for i := 3; i < len(n.Pix); i += 4 {
		n.Pix[i] = 0xff
	}
	return n
}

// resizeCrop resizes so that the shorter side is c.Size and centre-crops.
func (c ImageConfig) resizeCrop(img image.Image) *image.NRGBA {
	img = toRGB(img)
	b := img.Bounds()
	w, h := resizedDims(b.Dx(), b.Dy(), c.Size)
	if w != b.Dx() || h != b.Dy() {
		img = imaging.Resize(img, w, h, imaging.Linear)
	}
	// CropCenter always returns a fresh NRGBA with bounds starting at 0,0.
	return imaging.CropCenter(img, c.Size, c.Size)
}

// resizedDims returns the size of a w x h image scaled so that its shorter
// side is size: the longer side becomes floor(size*long/short), computed
// exactly in integers, as the export's recipe does (export/llm4rec_export/image.py).
func resizedDims(w, h, size int) (int, int) {
	if w <= h {
		return size, scaleFloor(h, size, w)
	}
	return scaleFloor(w, size, h), size
}

// scaleFloor returns floor(a*b/c) for positive a, b, c without floating
// point, and never less than b (the long side stays >= size).
func scaleFloor(a, b, c int) int {
	return max(int(int64(a)*int64(b)/int64(c)), b)
}

// normalise writes the CHW tensor of the Size x Size image into dst.
func (c ImageConfig) normalise(img *image.NRGBA, dst []float32) {
	// One table per channel maps each 8-bit value to its normalised float,
	// computed exactly as (v/255 - mean) / std in float32.
	var lut [3][256]float32
	for ch := range 3 {
		for v := range 256 {
			lut[ch][v] = (float32(v)/255 - c.Mean[ch]) / c.Std[ch]
		}
	}
	s := c.Size
	plane := s * s
	r, g, bl := dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	for y := range s {
		row := img.Pix[y*img.Stride : y*img.Stride+4*s]
		o := y * s
		for x := range s {
			p := row[4*x : 4*x+3 : 4*x+3]
			r[o+x] = lut[0][p[0]]
			g[o+x] = lut[1][p[1]]
			bl[o+x] = lut[2][p[2]]
		}
	}
}

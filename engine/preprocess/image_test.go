package preprocess

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"math"
	"strings"
	"testing"
)

func TestImageBadInputs(t *testing.T) {
	valid := encodePNG(t, noiseImage(64, 48))
	validJPEG := encodeJPEG(t, noiseImage(64, 48), 90)

	// A PNG whose compressed pixel data is damaged.
	corrupt := bytes.Clone(valid)
	idat := bytes.Index(corrupt, []byte("IDAT"))
	for i := idat + 8; i < idat+40 && i < len(corrupt); i++ {
		corrupt[i] ^= 0x5a
	}
	// A JPEG whose entropy-coded data is replaced by garbage.
	corruptJPEG := bytes.Clone(validJPEG)
	sos := bytes.Index(corruptJPEG, []byte{0xFF, 0xDA})
	for i := sos + 20; i < len(corruptJPEG)-2; i++ {
		corruptJPEG[i] = 0xFF
	}

	tests := []struct {
		name string
		cfg  ImageConfig
		data []byte
		want error
		msg  string // substring of the error message
	}{
		{"nil", ImageConfig{}, nil, ErrEmptyInput, "empty"},
		{"empty", ImageConfig{}, []byte{}, ErrEmptyInput, "empty"},
		{"one byte", ImageConfig{}, []byte{0xFF}, ErrImageFormat, "unrecognised"},
		{"text", ImageConfig{}, []byte("hello, world"), ErrImageFormat, "68 65 6c"},
		{"gif87", ImageConfig{}, []byte("GIF87a\x01\x00\x01\x00"), ErrImageFormat, "gif"},
		{"gif89", ImageConfig{}, []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00"), ErrImageFormat, "gif"},
		{"bmp", ImageConfig{}, []byte("BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00"), ErrImageFormat, "bmp"},
		{"webp", ImageConfig{}, []byte("RIFF\x24\x00\x00\x00WEBPVP8 "), ErrImageFormat, "webp"},
		{"tiff", ImageConfig{}, []byte("II*\x00\x08\x00\x00\x00"), ErrImageFormat, "tiff"},
		{"avif", ImageConfig{}, []byte("\x00\x00\x00\x1cftypavif\x00\x00\x00\x00"), ErrImageFormat, "avif"},
		{"wav", ImageConfig{}, sineWAV(0.01, 8000, 1, 16, 440, 0.5), ErrImageFormat, "unrecognised"},
		{"png magic only", ImageConfig{}, []byte("\x89PNG\r\n\x1a\n"), ErrImageDecode, "png header"},
		{"jpeg magic only", ImageConfig{}, []byte{0xFF, 0xD8, 0xFF}, ErrImageDecode, "jpeg header"},
		{"png truncated in header", ImageConfig{}, valid[:20], ErrImageDecode, "png header"},
		{"png truncated in data", ImageConfig{}, valid[:len(valid)/2], ErrImageDecode, "png:"},
		{"png without trailer", ImageConfig{}, valid[:len(valid)-12], ErrImageDecode, "png:"},
		{"png corrupt data", ImageConfig{}, corrupt, ErrImageDecode, "png:"},
		{"png header without data", ImageConfig{}, pngHeader(64, 64, nil), ErrImageDecode, "png:"},
		{"png zero width", ImageConfig{}, pngHeader(0, 64, nil), ErrImageDecode, "png"},
		{"jpeg truncated", ImageConfig{}, validJPEG[:len(validJPEG)/2], ErrImageDecode, "jpeg:"},
		{"jpeg corrupt data", ImageConfig{}, corruptJPEG, ErrImageDecode, "jpeg:"},
		{"jpeg header only", ImageConfig{}, jpegHeader(64, 64), ErrImageDecode, "jpeg:"},
		{"png 100000x100000", ImageConfig{}, pngHeader(100000, 100000, nil), ErrImageTooLarge, "100000x100000"},
		{"png 2^31-1 square", ImageConfig{}, pngHeader(1<<31-1, 1<<31-1, nil), ErrImageDecode, "overflow"},
		{"png negative width", ImageConfig{}, pngHeader(1<<32-1, 10, nil), ErrImageDecode, "png header"},
		{"png too wide", ImageConfig{}, pngHeader(8193, 1, nil), ErrImageTooLarge, "8193x1"},
		{"png too tall", ImageConfig{}, pngHeader(1, 8193, nil), ErrImageTooLarge, "1x8193"},
		{"png too many pixels", ImageConfig{}, pngHeader(8000, 6000, nil), ErrImageTooLarge, "48000000 pixels"},
		{"jpeg 65535x65535", ImageConfig{}, jpegHeader(65535, 65535), ErrImageTooLarge, "65535x65535"},
		{"small limits", ImageConfig{MaxWidth: 32}, valid, ErrImageTooLarge, "64x48"},
		{"pixel limit", ImageConfig{MaxPixels: 64*48 - 1}, valid, ErrImageTooLarge, "3072 pixels"},
		{"byte limit", ImageConfig{MaxBytes: 100}, valid, ErrImageTooLarge, "bytes, limit 100"},
		{"bad std", ImageConfig{Std: [3]float32{1, 0, 1}}, valid, ErrConfig, "std[1]"},
		{"nan std", ImageConfig{Std: [3]float32{1, float32(math.NaN()), 1}}, valid, ErrConfig, "std[1]"},
		{"bad size", ImageConfig{Size: -1}, valid, ErrConfig, "size"},
		{"negative limit", ImageConfig{MaxBytes: -1}, valid, ErrConfig, "limits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			dst := make([]float32, cfg.Len())
			err := cfg.Pixels(tt.data, dst)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "preprocess: ") || !strings.Contains(msg, tt.msg) {
				t.Errorf("message %q: want prefix %q and %q inside", msg, "preprocess: ", tt.msg)
			}
			got, err2 := cfg.AppendPixels([]float32{7}, tt.data)
			if !errors.Is(err2, tt.want) || len(got) != 1 || got[0] != 7 {
				t.Errorf("AppendPixels = len %d, %v; want dst unchanged and %v", len(got), err2, tt.want)
			}
		})
	}
}

func TestImageBufferSize(t *testing.T) {
	data := encodePNG(t, noiseImage(10, 10))
	for _, n := range []int{0, 3*224*224 - 1, 3*224*224 + 1} {
		if err := (ImageConfig{}).Pixels(data, make([]float32, n)); !errors.Is(err, ErrBufferSize) {
			t.Errorf("len %d: err = %v, want ErrBufferSize", n, err)
		}
	}
}

func TestImageConfigDefaults(t *testing.T) {
	c := ImageConfig{}.withDefaults()
	want := ImageConfig{Size: 224, Mean: ImageNetMean, Std: ImageNetStd, MaxWidth: 8192, MaxHeight: 8192, MaxPixels: 40_000_000, MaxBytes: 20 << 20, MaxDecodeBytes: 256 << 20}
	if c != want {
		t.Errorf("defaults = %+v, want %+v", c, want)
	}
	if n := (ImageConfig{}).Len(); n != 3*224*224 {
		t.Errorf("Len = %d", n)
	}
	// A configured Std keeps a zero Mean.
	c = ImageConfig{Std: [3]float32{1, 1, 1}}.withDefaults()
	if c.Mean != ([3]float32{}) {
		t.Errorf("mean = %v, want zero", c.Mean)
	}
}

// expectPlane checks that every value of channel ch in the rectangle
// [x0,x1) x [y0,y1) of the tensor is within tol of want.
func expectPlane(t *testing.T, px []float32, size, ch, x0, x1, y0, y1 int, want, tol float32, what string) {
	t.Helper()
	bad := 0
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			got := px[ch*size*size+y*size+x]
			if d := got - want; d > tol || d < -tol {
				if bad < 3 {
					t.Errorf("%s: channel %d at (%d,%d) = %v, want %v", what, ch, x, y, got, want)
				}
				bad++
			}
		}
	}
	if bad > 3 {
		t.Errorf("%s: %d values off", what, bad)
	}
}

func norm(v uint8, ch int) float32 {
	return (float32(v)/255 - ImageNetMean[ch]) / ImageNetStd[ch]
}

func TestImageSolidColour(t *testing.T) {
	c := color.NRGBA{R: 10, G: 128, B: 250, A: 255}
	gray := image.NewGray(image.Rect(0, 0, 300, 200))
	for i := range gray.Pix {
		gray.Pix[i] = 77
	}
	pal := image.NewPaletted(image.Rect(0, 0, 150, 400), color.Palette{color.RGBA{1, 2, 3, 255}, color.RGBA{10, 128, 250, 255}})
	for i := range pal.Pix {
		pal.Pix[i] = 1
	}
	wide16 := image.NewNRGBA64(image.Rect(0, 0, 500, 230))
	for y := range 230 {
		for x := range 500 {
			wide16.SetNRGBA64(x, y, color.NRGBA64{R: 10 * 257, G: 128 * 257, B: 250 * 257, A: 0xffff})
		}
	}
	// Alpha is dropped, not composited: a fully transparent pixel keeps its
	// colour, as with PIL's convert("RGB").
	transparent := solidNRGBA(230, 300, color.NRGBA{R: 10, G: 128, B: 250, A: 0})
	halfAlpha := solidNRGBA(224, 224, color.NRGBA{R: 10, G: 128, B: 250, A: 128})
	palAlpha := image.NewPaletted(image.Rect(0, 0, 260, 240), color.Palette{color.NRGBA{10, 128, 250, 0}, color.NRGBA{1, 2, 3, 7}})

	tests := []struct {
		name    string
		data    []byte
		rgb     [3]uint8
		tol     float32
		minimum int // allowed JPEG error in 8-bit steps
	}{
		{"png rgb 300x200", encodePNG(t, solidNRGBA(300, 200, c)), [3]uint8{10, 128, 250}, 1e-6, 0},
		{"png exact size", encodePNG(t, solidNRGBA(224, 224, c)), [3]uint8{10, 128, 250}, 1e-6, 0},
		{"png smaller than size", encodePNG(t, solidNRGBA(17, 31, c)), [3]uint8{10, 128, 250}, 1e-6, 0},
		{"png gray", encodePNG(t, gray), [3]uint8{77, 77, 77}, 1e-6, 0},
		{"png paletted", encodePNG(t, pal), [3]uint8{10, 128, 250}, 1e-6, 0},
		{"png 16-bit", encodePNG(t, wide16), [3]uint8{10, 128, 250}, 1e-6, 0},
		{"png transparent", encodePNG(t, transparent), [3]uint8{10, 128, 250}, 1e-6, 0},
		{"png half alpha", encodePNG(t, halfAlpha), [3]uint8{10, 128, 250}, 1e-6, 0},
		{"png paletted transparent", encodePNG(t, palAlpha), [3]uint8{10, 128, 250}, 1e-6, 0},
		{"jpeg", encodeJPEG(t, solidNRGBA(320, 240, c), 95), [3]uint8{10, 128, 250}, 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			px, err := ImageConfig{}.AppendPixels(nil, tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if len(px) != 3*224*224 {
				t.Fatalf("len = %d", len(px))
			}
			for ch := range 3 {
				tol := tt.tol + float32(tt.minimum)/255/ImageNetStd[ch]
				expectPlane(t, px, 224, ch, 0, 224, 0, 224, norm(tt.rgb[ch], ch), tol, tt.name)
			}
		})
	}
}

func TestImageCustomNormalisation(t *testing.T) {
	cfg := ImageConfig{Size: 8, Mean: [3]float32{0.5, 0, 1}, Std: [3]float32{0.5, 1, 2}}
	px, err := cfg.AppendPixels(nil, encodePNG(t, solidNRGBA(20, 10, color.NRGBA{255, 51, 0, 255})))
	if err != nil {
		t.Fatal(err)
	}
	want := [3]float32{1, 0.2, -0.5}
	for ch := range 3 {
		expectPlane(t, px, 8, ch, 0, 8, 0, 8, want[ch], 1e-6, "custom")
	}
}

// bands returns a w x h image split into vertical (or horizontal) bands of
// the given colours.
func bands(w, h int, vertical bool, cs ...color.NRGBA) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			i := x * len(cs) / w
			if !vertical {
				i = y * len(cs) / h
			}
			img.SetNRGBA(x, y, cs[i])
		}
	}
	return img
}

var (
	red   = color.NRGBA{255, 0, 0, 255}
	green = color.NRGBA{0, 255, 0, 255}
	blue  = color.NRGBA{0, 0, 255, 255}
	white = color.NRGBA{255, 255, 255, 255}
)

func expectColour(t *testing.T, px []float32, x0, x1, y0, y1 int, c color.NRGBA, what string) {
	t.Helper()
	for ch, v := range [3]uint8{c.R, c.G, c.B} {
		expectPlane(t, px, 224, ch, x0, x1, y0, y1, norm(v, ch), 1e-6, what)
	}
}

func TestImageCenterCrop(t *testing.T) {
	t.Run("wide halves", func(t *testing.T) {
		// 600x300 -> 448x224 (left red, right blue) -> crop x 112..336:
		// the colour boundary lands in the middle of the output.
		px, err := ImageConfig{}.AppendPixels(nil, encodePNG(t, bands(600, 300, true, red, blue)))
		if err != nil {
			t.Fatal(err)
		}
		expectColour(t, px, 0, 108, 0, 224, red, "left")
		expectColour(t, px, 116, 224, 0, 224, blue, "right")
	})
	t.Run("wide thirds", func(t *testing.T) {
		// 600x200 -> 672x224; the crop keeps exactly the middle third,
		// so nothing of the red and blue thirds survives except the
		// resize filter's blur at the edges. A squash would keep all three.
		px, err := ImageConfig{}.AppendPixels(nil, encodePNG(t, bands(600, 200, true, red, green, blue)))
		if err != nil {
			t.Fatal(err)
		}
		expectColour(t, px, 3, 221, 0, 224, green, "middle")
	})
	t.Run("tall halves", func(t *testing.T) {
		// 300x900 -> 224x672, crop y 224..448; the boundary at y=450
		// becomes 336, i.e. 112 in the crop.
		px, err := ImageConfig{}.AppendPixels(nil, encodePNG(t, bands(300, 900, false, green, white)))
		if err != nil {
			t.Fatal(err)
		}
		expectColour(t, px, 0, 224, 0, 108, green, "top")
		expectColour(t, px, 0, 224, 116, 224, white, "bottom")
	})
	t.Run("no resize", func(t *testing.T) {
		// 448x224 needs no resize: the crop is exact, boundary at x=112.
		px, err := ImageConfig{}.AppendPixels(nil, encodePNG(t, bands(224*2, 224, true, red, blue)))
		if err != nil {
			t.Fatal(err)
		}
		expectColour(t, px, 0, 112, 0, 224, red, "left")
		expectColour(t, px, 112, 224, 0, 224, blue, "right")
	})
	t.Run("channel layout", func(t *testing.T) {
		// CHW: plane 0 is red. A pure red image has R=1 and G=B=0.
		px, err := ImageConfig{}.AppendPixels(nil, encodePNG(t, solidNRGBA(224, 224, red)))
		if err != nil {
			t.Fatal(err)
		}
		if px[0] != norm(255, 0) || px[224*224] != norm(0, 1) || px[2*224*224] != norm(0, 2) {
			t.Errorf("first values of each plane: %v %v %v", px[0], px[224*224], px[2*224*224])
		}
	})
}

func TestResizedDims(t *testing.T) {
	tests := []struct{ w, h, size, ww, wh int }{
		{300, 200, 224, 336, 224},
		{200, 300, 224, 224, 336},
		{224, 224, 224, 224, 224},
		{225, 224, 224, 225, 224},
		{17, 31, 224, 224, 408},    // 408.47 -> 408
		{641, 480, 224, 299, 224},  // 299.13 -> 299
		{642, 480, 224, 299, 224},  // 299.6 -> 299
		{185, 278, 224, 224, 336},  // a poster: 336.6 -> 336
		{3, 1000, 224, 224, 74666}, // 74666.67 -> 74666
		{8192, 1, 224, 1835008, 224},
	}
	for _, tt := range tests {
		w, h := resizedDims(tt.w, tt.h, tt.size)
		if w != tt.ww || h != tt.wh {
			t.Errorf("resizedDims(%d, %d, %d) = %d, %d; want %d, %d", tt.w, tt.h, tt.size, w, h, tt.ww, tt.wh)
		}
	}
}

func TestAppendPixelsBatch(t *testing.T) {
	a := encodePNG(t, noiseImage(300, 200))
	b := encodeJPEG(t, noiseImage(200, 300), 85)
	cfg := ImageConfig{Size: 32}
	batch, err := cfg.AppendPixels(nil, a)
	if err != nil {
		t.Fatal(err)
	}
	batch, err = cfg.AppendPixels(batch, b)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Len()
	for i, data := range [][]byte{a, b} {
		one := make([]float32, n)
		if err := cfg.Pixels(data, one); err != nil {
			t.Fatal(err)
		}
		for j := range one {
			if one[j] != batch[i*n+j] {
				t.Fatalf("image %d differs at %d: batch %v, alone %v", i, j, batch[i*n+j], one[j])
			}
		}
	}
}

func TestImageFormatNames(t *testing.T) {
	for data, want := range map[string]string{
		"\xff\xd8\xff\xe0":         "jpeg",
		"\x89PNG\r\n\x1a\n":        "png",
		"GIF89a":                   "gif",
		"BM":                       "bmp",
		"RIFF\x00\x00\x00\x00WEBP": "webp",
		"MM\x00*":                  "tiff",
		"\x00\x00\x00\x18ftypheic": "heif",
		"\x00\x00\x01\x00":         "ico",
		"%PDF-1.4":                 "pdf",
		"":                         "",
		"\x89PN":                   "",
	} {
		if got := imageFormat([]byte(data)); got != want {
			t.Errorf("imageFormat(%q) = %q, want %q", data, got, want)
		}
	}
}

// pngHeaderTyped is pngHeader with a chosen bit depth and colour type.
func pngHeaderTyped(w, h uint32, depth, colorType byte) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:4], w)
	binary.BigEndian.PutUint32(ihdr[4:8], h)
	ihdr[8], ihdr[9] = depth, colorType
	writePNGChunk(&b, "IHDR", ihdr)
	return b.Bytes()
}

// The memory a decode would allocate is judged from the header, bit depth and channels
// counted: a 6000x5999 16-bit RGBA PNG (36 megapixels, under the pixel limit) is refused
// before any decoding, the same dimensions in 8-bit gray are not.
func TestDecodeBytesCountsBitDepthAndChannels(t *testing.T) {
	var c ImageConfig
	big := pngHeaderTyped(6000, 5999, 16, 6)
	if _, err := c.DecodeBytes(big); !errors.Is(err, ErrImageTooLarge) || !strings.Contains(err.Error(), "MiB") {
		t.Fatalf("16-bit RGBA 6000x5999: %v, want ErrImageTooLarge naming the memory", err)
	}
	if _, err := c.AppendPixels(nil, big); !errors.Is(err, ErrImageTooLarge) {
		t.Fatalf("decoding it: %v, want ErrImageTooLarge before decoding", err)
	}
	gray := pngHeaderTyped(6000, 5999, 8, 0)
	n, err := c.DecodeBytes(gray)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(6000*5999) + 4*6000*224; n != want {
		t.Fatalf("8-bit gray: %d bytes, want %d", n, want)
	}
	rgba8, _ := c.DecodeBytes(pngHeaderTyped(1000, 1000, 8, 6))
	rgba16, _ := c.DecodeBytes(pngHeaderTyped(1000, 1000, 16, 6))
	// 8-bit RGBA decodes to NRGBA (4 bytes, alpha dropped in place); 16-bit to NRGBA64 (8
	// bytes) plus the 4-byte NRGBA copy
	if rgba16-rgba8 != 8*1000*1000 {
		t.Fatalf("16-bit RGBA costs %d, 8-bit %d: want 8 bytes a pixel more", rgba16, rgba8)
	}
	small := ImageConfig{MaxDecodeBytes: rgba8 - 1}
	if _, err := small.DecodeBytes(pngHeaderTyped(1000, 1000, 8, 6)); !errors.Is(err, ErrImageTooLarge) {
		t.Fatalf("one byte over MaxDecodeBytes: %v", err)
	}
	if _, err := (ImageConfig{MaxDecodeBytes: rgba8}).DecodeBytes(pngHeaderTyped(1000, 1000, 8, 6)); err != nil {
		t.Fatalf("at MaxDecodeBytes: %v", err)
	}
}

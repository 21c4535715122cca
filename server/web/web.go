// Package web is the engine's web page: plain HTML, CSS and JavaScript, with no build step,
// embedded in the binary and served by the server at / (index.html) and /web/NAME (the rest).
// The page calls the HTTP API from the browser with the key typed into it; its own files need
// no key.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"path"
	"sort"
)

//go:embed static
var static embed.FS

// File is one file of the page, read once at start-up.
type File struct {
	Name        string
	ContentType string
	// ETag is a strong validator of Body (a quoted prefix of its SHA-256), for conditional
	// requests: the page is revalidated on every load and sent again only when it changed.
	ETag string
	Body []byte
}

// Index is the page's entry, served at /.
const Index = "index.html"

// Headers are the response headers every file of the page is served with: the page may load
// scripts, styles and workers only from the server itself and connect only to it; images and
// audio may also be the page's own previews (blob:, data:); it may not be framed.
var Headers = map[string]string{
	"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; " +
		"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options": "nosniff",
	"Referrer-Policy":        "no-referrer",
	"Cache-Control":          "no-cache",
	"Permissions-Policy":     "microphone=(self), camera=()",
}

// contentTypes are the page's file types (a fixed table: the system's MIME files differ between
// machines).
var contentTypes = map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}

var files = load()

func load() map[string]File {
	out := map[string]File{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			ct = "application/octet-stream"
		}
		name := path.Base(p)
		out[name] = File{Name: name, ContentType: ct, ETag: `"` + hex.EncodeToString(sum[:12]) + `"`, Body: body}
		return nil
	})
	if err != nil {
		panic("web: embedded files unreadable: " + err.Error()) // the binary was built broken
	}
	return out
}

// Lookup returns the file called name (a base name, as in /web/NAME).
func Lookup(name string) (File, bool) {
	f, ok := files[name]
	return f, ok
}

// Names lists the page's files, sorted.
func Names() []string {
	var out []string
	for n := range files {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

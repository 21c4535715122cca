package server

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/llm4rec/llm4rec/server/web"
)

// handleWebIndex is GET /: the web page (server/web), open to all; the page asks for the API
// key itself and sends it with each API call.
func (s *Server) handleWebIndex(ctx *fasthttp.RequestCtx) error {
	return serveWebFile(ctx, web.Index)
}

// handleWebFile is GET /web/NAME: the page's scripts and styles.
func (s *Server) handleWebFile(ctx *fasthttp.RequestCtx) error {
	return serveWebFile(ctx, strings.TrimPrefix(string(ctx.Path()), "/web/"))
}

func serveWebFile(ctx *fasthttp.RequestCtx, name string) error {
	f, ok := web.Lookup(name)
	if !ok {
		return &apiError{status: 404, code: "not_found", msg: fmt.Sprintf("no file %q in the web page", truncate(name, 64))}
	}
	for k, v := range web.Headers {
		ctx.Response.Header.Set(k, v)
	}
	ctx.Response.Header.Set("ETag", f.ETag)
	if inm := ctx.Request.Header.Peek("If-None-Match"); inm != nil && etagMatches(inm, f.ETag) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return nil
	}
	ctx.SetContentType(f.ContentType)
	ctx.SetBody(f.Body)
	return nil
}

// etagMatches reports whether an If-None-Match list names etag (or is "*").
func etagMatches(header []byte, etag string) bool {
	for _, tag := range bytes.Split(header, []byte(",")) {
		tag = bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(tag), []byte("W/")))
		if string(tag) == etag || string(tag) == "*" {
			return true
		}
	}
	return false
}

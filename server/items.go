package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// maxSearchBytes bounds the text of a catalog search (GET /v1/items?q=): a search is a few
// words, and the text encoder reads at most the tokenizer's max_length tokens of it anyway.
// The request line's own limit (4 KiB) bounds it before this.
const maxSearchBytes = 1000

// defaultSearchLimit is how many items a search returns without limit=.
const defaultSearchLimit = 10

// handleSearch is GET /v1/items?q=TEXT&limit=N: the N catalog items (default 10, at most
// Config.MaxK) nearest to TEXT by the bundle's text encoder (recommend.Engine.Search). The
// parameters are checked before any model runs: only q and limit, each at most once; q
// non-blank UTF-8 of at most maxSearchBytes; limit an integer from 1 to MaxK. A search takes
// one of the MaxInFlight slots that recommendations take (it runs the text encoder), and
// RequestTimeout bounds it.
func (s *Server) handleSearch(ctx *fasthttp.RequestCtx) error {
	args := ctx.QueryArgs()
	var bad error
	args.VisitAll(func(k, _ []byte) {
		if bad == nil && string(k) != "q" && string(k) != "limit" {
			bad = badRequest("unknown query parameter %q: want q and limit", truncate(string(k), 64))
		}
	})
	if bad != nil {
		return bad
	}
	for _, name := range []string{"q", "limit"} {
		if n := len(args.PeekMulti(name)); n > 1 {
			return badRequest("%s given %d times: give it once", name, n)
		}
	}
	q := string(args.Peek("q"))
	switch {
	case strings.TrimSpace(q) == "":
		return badRequest("q: give the text to search the catalog for, e.g. /v1/items?q=space+adventure")
	case !utf8.ValidString(q):
		return badRequest("q: not UTF-8")
	case len(q) > maxSearchBytes:
		return badRequest("q of %d bytes exceeds the limit of %d", len(q), maxSearchBytes)
	}
	limit := defaultSearchLimit
	if raw := args.Peek("limit"); raw != nil {
		n, err := strconv.Atoi(string(raw))
		if err != nil {
			return badRequest("limit %q: want an integer from 1 to %d", truncate(string(raw), 32), s.cfg.MaxK)
		}
		if n < 1 || n > s.cfg.MaxK {
			return badRequest("limit %d: must be 1 to %d", n, s.cfg.MaxK)
		}
		limit = n
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		return &apiError{status: 503, code: "overloaded", msg: fmt.Sprintf("%d requests in flight", s.cfg.MaxInFlight), retryAfter: 1}
	}
	l := s.engines.acquire()
	if l == nil {
		return &apiError{status: 503, code: "not_ready", msg: "no model loaded", retryAfter: 1}
	}
	defer l.release()
	c, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	hits, err := l.eng.Search(c, q, limit)
	if err != nil {
		return err
	}
	m := l.eng.Manifest()
	writeJSON(ctx, 200, map[string]any{"query": q, "items": hits,
		"model": map[string]string{"name": m.Name, "version": m.Version}})
	return nil
}

// truncate shortens s to at most n bytes for quoting in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

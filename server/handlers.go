package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime/debug"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/preprocess"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/server/feedback"
)

// apiError is an error with its HTTP status and machine-readable code.
type apiError struct {
	status     int
	code       string
	msg        string
	retryAfter int // seconds; 0: none
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: 400, code: "bad_request", msg: fmt.Sprintf(format, args...)}
}

// classify maps every error the engine and the store return to its HTTP answer, in one place.
func classify(err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, batch.ErrQueueFull):
		return &apiError{status: 503, code: "overloaded", msg: err.Error(), retryAfter: 1}
	case errors.Is(err, batch.ErrDeadline), errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: 504, code: "timeout", msg: err.Error()}
	case errors.Is(err, batch.ErrClosed):
		return &apiError{status: 503, code: "unavailable", msg: "the model is being replaced or the server is stopping", retryAfter: 1}
	case errors.Is(err, preprocess.ErrImageTooLarge), errors.Is(err, preprocess.ErrAudioTooLarge):
		return &apiError{status: 413, code: "too_large", msg: err.Error()}
	case errors.Is(err, recommend.ErrRequest), errors.Is(err, ort.ErrInput):
		return &apiError{status: 400, code: "bad_request", msg: err.Error()}
	case errors.Is(err, feedback.ErrInvalid):
		return &apiError{status: 400, code: "invalid_event", msg: err.Error()}
	case errors.Is(err, feedback.ErrConflict):
		return &apiError{status: 409, code: "conflict", msg: err.Error()}
	case errors.Is(err, feedback.ErrUnavailable):
		return &apiError{status: 503, code: "log_unavailable", msg: err.Error(), retryAfter: 5}
	}
	var verr *bundle.ValidationError
	if errors.As(err, &verr) {
		return &apiError{status: 422, code: "invalid_bundle", msg: err.Error()}
	}
	return &apiError{status: 500, code: "internal", msg: err.Error()}
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	enc := json.NewEncoder(ctx)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		ctx.SetStatusCode(500)
	}
}

func writeError(ctx *fasthttp.RequestCtx, err error) {
	ae := classify(err)
	if ae.retryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", fmt.Sprint(ae.retryAfter))
	}
	writeJSON(ctx, ae.status, map[string]any{"error": map[string]string{"code": ae.code, "message": ae.msg}})
}

// scope of a route: who may call it.
type scope int

const (
	scopeOpen scope = iota
	scopeInference
	scopeAdmin
)

type route struct {
	method, path string // path may end in "/" to match a prefix with one more segment ("/" itself is exact)
	name         string // metrics label
	scope        scope
	fn           func(*fasthttp.RequestCtx) error
}

// routes lists the API's routes; New builds them once into s.router.
func (s *Server) routes() []route {
	health := scopeInference
	if *s.cfg.OpenHealth {
		health = scopeOpen
	}
	return []route{
		{"POST", "/v1/recommend", "recommend", scopeInference, s.handleRecommend},
		{"POST", "/v1/feedback", "feedback", scopeInference, s.handleFeedback},
		{"GET", "/v1/items", "item_search", scopeInference, s.handleSearch},
		{"GET", "/v1/items/", "items", scopeInference, s.handleItem},
		{"GET", "/v1/users/", "users", scopeInference, s.handleUser},
		{"GET", "/healthz/live", "live", health, s.handleLive},
		{"GET", "/healthz/ready", "ready", health, s.handleReady},
		{"GET", "/metrics", "metrics", health, s.handleMetrics},
		{"GET", "/openapi.json", "openapi", scopeOpen, s.handleOpenAPI},
		{"GET", "/", "web", scopeOpen, s.handleWebIndex},
		{"GET", "/web/", "web", scopeOpen, s.handleWebFile},
		{"POST", "/admin/models/reload", "reload", scopeAdmin, s.handleReload},
		{"POST", "/admin/items", "add_items", scopeAdmin, s.handleAddItems},
	}
}

func (s *Server) match(method, path string) (*route, bool) {
	pathKnown := false
	for i := range s.router {
		r := &s.router[i]
		ok := r.path == path
		if len(r.path) > 1 && strings.HasSuffix(r.path, "/") && strings.HasPrefix(path, r.path) {
			rest := path[len(r.path):]
			ok = rest != "" && !strings.Contains(rest, "/")
		}
		if !ok {
			continue
		}
		pathKnown = true
		if r.method == method {
			return r, true
		}
	}
	return nil, pathKnown
}

// handle is the fasthttp handler: routing, auth, metrics and panic recovery.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	name := "unknown"
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic serving request", "path", string(ctx.Path()), "panic", p, "stack", string(debug.Stack()))
			ctx.ResetBody()
			writeError(ctx, &apiError{status: 500, code: "internal", msg: "internal error"})
		}
		s.m.observeRequest(name, ctx.Response.StatusCode(), time.Since(start))
	}()
	r, pathKnown := s.match(string(ctx.Method()), string(ctx.Path()))
	if r == nil {
		if pathKnown {
			writeError(ctx, &apiError{status: 405, code: "method_not_allowed", msg: fmt.Sprintf("%s not allowed on %s", ctx.Method(), ctx.Path())})
			return
		}
		writeError(ctx, &apiError{status: 404, code: "not_found", msg: fmt.Sprintf("no route %s", ctx.Path())})
		return
	}
	name = r.name
	if err := s.authorize(ctx, r.scope); err != nil {
		writeError(ctx, err)
		return
	}
	release, err := s.readBody(ctx)
	if err != nil {
		writeError(ctx, err)
		return
	}
	defer release()
	if err := r.fn(ctx); err != nil {
		writeError(ctx, err)
	}
}

// readBody reads an authorized request's body into memory within the server-wide body budget
// (Config.MaxBodyMemory): the declared length (MaxBodyBytes when chunked) is reserved first, or
// the request is answered 503 at once with nothing read; release returns the reservation when
// the handler is done with the body. fasthttp streams bodies (Server.StreamRequestBody), so
// nothing beyond its first few kilobytes is held before this runs.
func (s *Server) readBody(ctx *fasthttp.RequestCtx) (release func(), err error) {
	if declared := ctx.Request.Header.Peek(bodyRefusedHeader); declared != nil {
		ctx.SetConnectionClose()
		return nil, &apiError{status: 413, code: "too_large", msg: fmt.Sprintf("request body of %s bytes exceeds the limit of %d bytes", declared, s.cfg.MaxBodyBytes)}
	}
	n := ctx.Request.Header.ContentLength()
	stream := ctx.RequestBodyStream()
	if n == 0 || stream == nil {
		return func() {}, nil
	}
	want := int64(n)
	if n < 0 || n > s.cfg.MaxBodyBytes {
		want = int64(s.cfg.MaxBodyBytes) // chunked: at most the limit is read
	}
	if n > s.cfg.MaxBodyBytes {
		return nil, &apiError{status: 413, code: "too_large", msg: fmt.Sprintf("request body of %d bytes exceeds the limit of %d bytes", n, s.cfg.MaxBodyBytes)}
	}
	if !s.bodies.TryAcquire(want) {
		s.m.bodyRefused.Inc()
		return nil, &apiError{status: 503, code: "busy", retryAfter: 1,
			msg: fmt.Sprintf("request bodies in flight fill the server's body memory budget of %d bytes: retry", s.cfg.MaxBodyMemory)}
	}
	release = func() { s.bodies.Release(want) }
	body, err := io.ReadAll(io.LimitReader(stream, int64(s.cfg.MaxBodyBytes)+1))
	if err != nil {
		release()
		return nil, readError(err, s.cfg)
	}
	if len(body) > s.cfg.MaxBodyBytes {
		release()
		return nil, &apiError{status: 413, code: "too_large", msg: fmt.Sprintf("request body exceeds the limit of %d bytes", s.cfg.MaxBodyBytes)}
	}
	ctx.Request.SetBodyRaw(body)
	return release, nil
}

// authorize checks the bearer key in constant time: 401 without a valid key, 403 with a valid
// key of the wrong scope. No keys configured: everything is open.
func (s *Server) authorize(ctx *fasthttp.RequestCtx, sc scope) error {
	if sc == scopeOpen || (s.cfg.APIKey == "" && s.cfg.AdminKey == "") {
		return nil
	}
	h := string(ctx.Request.Header.Peek("Authorization"))
	scheme, key, ok := strings.Cut(strings.TrimSpace(h), " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" { // scheme names are case-insensitive (RFC 9110)
		return &apiError{status: 401, code: "unauthorized", msg: "missing bearer key (Authorization: Bearer KEY)"}
	}
	isAdmin := s.cfg.AdminKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.AdminKey)) == 1
	isInference := s.cfg.APIKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.APIKey)) == 1
	switch {
	case isAdmin:
		return nil
	case isInference && sc == scopeInference:
		return nil
	case isInference:
		return &apiError{status: 403, code: "forbidden", msg: "this key may not call admin endpoints"}
	}
	return &apiError{status: 401, code: "unauthorized", msg: "invalid key"}
}

// jsonDepth returns the deepest nesting of objects and arrays in b (strings skipped), stopping
// early once limit is passed.
func jsonDepth(b []byte, limit int) int {
	depth, deepest, inStr, esc := 0, 0, false, false
	for _, c := range b {
		switch {
		case inStr && esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case inStr && c == '"':
			inStr = false
		case inStr:
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
			if depth > deepest {
				deepest = depth
				if deepest > limit {
					return deepest
				}
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

func (s *Server) decode(ctx *fasthttp.RequestCtx, v any) error {
	body := ctx.PostBody()
	if len(body) == 0 {
		return badRequest("empty body: want JSON")
	}
	if d := jsonDepth(body, s.cfg.MaxJSONDepth); d > s.cfg.MaxJSONDepth {
		return badRequest("JSON nested deeper than %d levels", s.cfg.MaxJSONDepth)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON: %v", jsonProblem(err))
	}
	if dec.More() {
		return badRequest("invalid JSON: more than one value")
	}
	return nil
}

// jsonProblem says what is wrong with a request's JSON in the API's terms: the field and the
// JSON type it wants, never the Go types behind it.
func jsonProblem(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := map[reflect.Kind]string{reflect.String: "a string", reflect.Bool: "true or false", reflect.Slice: "an array",
			reflect.Map: "an object", reflect.Struct: "an object", reflect.Int: "an integer", reflect.Int64: "an integer",
			reflect.Float64: "a number", reflect.Float32: "a number"}
		k := te.Type.Kind()
		if k == reflect.Pointer {
			k = te.Type.Elem().Kind()
		}
		w, ok := want[k]
		if !ok {
			w = "another type"
		}
		field := te.Field
		if field == "" {
			field = "the body"
		}
		return fmt.Errorf("%s: got %s, want %s", field, te.Value, w)
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("unknown field %s", msg)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

// RecommendRequest is POST /v1/recommend's body.
type RecommendRequest struct {
	UserID      string   `json:"user_id,omitempty"`
	History     []string `json:"history,omitempty"`
	Query       string   `json:"query,omitempty"`
	Image       string   `json:"image,omitempty"` // base64 JPEG or PNG
	Audio       string   `json:"audio,omitempty"` // base64 PCM WAV
	K           *int     `json:"k,omitempty"`     // absent: 10
	ExcludeSeen *bool    `json:"exclude_seen,omitempty"`
	IPSAlpha    *float64 `json:"ips_alpha,omitempty"`
	Debias      Debias   `json:"debias,omitempty"`
	Explain     Explain  `json:"explain,omitempty"`
	Mode        string   `json:"mode,omitempty"`
}

// Explain is the request's `explain`: false (none), true (one sentence per item) or
// "detailed" (up to three).
type Explain struct{ On, Detailed bool }

// UnmarshalJSON accepts true, false, null and "detailed"; anything else is refused.
func (x *Explain) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true":
		*x = Explain{On: true}
	case "false", "null":
		*x = Explain{}
	case `"detailed"`:
		*x = Explain{On: true, Detailed: true}
	default:
		return errors.New(`explain: want true, false or "detailed"`)
	}
	return nil
}

// MarshalJSON writes the value UnmarshalJSON reads.
func (x Explain) MarshalJSON() ([]byte, error) {
	switch {
	case x.Detailed:
		return []byte(`"detailed"`), nil
	case x.On:
		return []byte("true"), nil
	}
	return []byte("false"), nil
}

func decodeMedia(field, b64 string, limit int) ([]byte, error) {
	if b64 == "" {
		return nil, nil
	}
	if base64.StdEncoding.DecodedLen(len(b64)) > limit+3 {
		return nil, &apiError{status: 413, code: "too_large", msg: fmt.Sprintf("%s of about %d bytes exceeds the limit of %d", field, base64.StdEncoding.DecodedLen(len(b64)), limit)}
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, badRequest("%s: not base64: %v", field, err)
	}
	if len(data) > limit {
		return nil, &apiError{status: 413, code: "too_large", msg: fmt.Sprintf("%s of %d bytes exceeds the limit of %d", field, len(data), limit)}
	}
	return data, nil
}

func (s *Server) handleRecommend(ctx *fasthttp.RequestCtx) error {
	select {
	case s.slots <- struct{}{}:
	default:
		return &apiError{status: 503, code: "overloaded", msg: fmt.Sprintf("%d requests in flight", s.cfg.MaxInFlight), retryAfter: 1}
	}
	slotHeld := true // until the engine's work below takes it over
	defer func() {
		if slotHeld {
			<-s.slots
		}
	}()
	var req RecommendRequest
	if err := s.decode(ctx, &req); err != nil {
		return err
	}
	if req.UserID == "" && len(req.History) == 0 && req.Query == "" && req.Image == "" && req.Audio == "" {
		return badRequest("give at least one of user_id, history, query, image, audio")
	}
	if len(req.History) > s.cfg.MaxHistory {
		return badRequest("history of %d items exceeds the limit of %d", len(req.History), s.cfg.MaxHistory)
	}
	img, err := decodeMedia("image", req.Image, s.cfg.MaxImageBytes)
	if err != nil {
		return err
	}
	aud, err := decodeMedia("audio", req.Audio, s.cfg.MaxAudioBytes)
	if err != nil {
		return err
	}
	l := s.engines.acquire()
	if l == nil {
		return &apiError{status: 503, code: "not_ready", msg: "no model loaded", retryAfter: 1}
	}
	defer l.release()
	history := req.History
	var skipped []string
	if room := s.cfg.MaxHistory - len(history); req.UserID != "" && room > 0 {
		// the stored history keeps only what this model's catalog has: an item logged for a
		// catalog since replaced cannot make the user's every request fail; the answer names
		// what was left out
		var known []string
		for _, id := range s.live.History(req.UserID, room) {
			if _, ok := l.eng.Row(id); ok {
				known = append(known, id)
			} else {
				skipped = append(skipped, id)
			}
		}
		history = append(known, history...)
	}
	k := 0 // the engine's default
	if req.K != nil {
		if *req.K < 1 || *req.K > s.cfg.MaxK {
			return badRequest("k %d: must be 1 to %d", *req.K, s.cfg.MaxK)
		}
		k = *req.K
	}
	m := l.eng.Manifest()
	alpha, applied, err := resolveDebias(req.Debias, req.IPSAlpha, m.IPS)
	if err != nil {
		return err
	}
	r := recommend.Request{History: history, Query: req.Query, Image: img, Audio: aud, K: k,
		ExcludeSeen: req.ExcludeSeen == nil || *req.ExcludeSeen, Alpha: alpha, Explain: req.Explain.On, ExplainDetail: req.Explain.Detailed, Mode: recommend.Mode(req.Mode)}
	c, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	// The engine works apart from the handler so that the answer leaves at the deadline (504)
	// even while a graph run that cannot be interrupted is still going; the engine stops at its
	// next step, and the work keeps its in-flight slot and its engine until it ends.
	type outcome struct {
		resp *recommend.Response
		err  error
	}
	done := make(chan outcome, 1)
	l.hold()
	slotHeld = false
	go func() {
		defer func() { <-s.slots }()
		defer l.release()
		resp, err := l.eng.Recommend(c, r)
		done <- outcome{resp, err}
	}()
	var resp *recommend.Response
	select {
	case o := <-done:
		if o.err != nil {
			return o.err
		}
		resp = o.resp
	case <-c.Done():
		return fmt.Errorf("%w: %w", batch.ErrDeadline, c.Err())
	}
	applied.Popularity = resp.Alpha
	writeJSON(ctx, 200, recommendResponse{Context: resp.Context, Debias: applied, Skipped: skipped, Alpha: resp.Alpha,
		Items: resp.Items, Mode: resp.Mode, Model: modelName{m.Name, m.Version}, Provider: s.backend.Provider(),
		Timings: resp.Timings, UserID: req.UserID})
	return nil
}

// recommendResponse is POST /v1/recommend's answer (openapi.json, RecommendResponse). A struct,
// not a map: encoding/json encodes it without building and sorting a map on every request;
// the fields are in the order the map's sorted keys had, so the bytes are the same.
type recommendResponse struct {
	Context  []string                   `json:"context_items"`
	Debias   AppliedDebias              `json:"debias"`
	Skipped  []string                   `json:"history_skipped,omitempty"`
	Alpha    float64                    `json:"ips_alpha"`
	Items    []recommend.Recommendation `json:"items"`
	Mode     recommend.Mode             `json:"mode"`
	Model    modelName                  `json:"model"`
	Provider string                     `json:"provider"`
	Timings  recommend.Timings          `json:"timings_us"`
	UserID   string                     `json:"user_id"`
}

type modelName struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// FeedbackRequest is POST /v1/feedback's body: one event, or {"events": [...]}.
type FeedbackRequest struct {
	feedback.Event
	Events []feedback.Event `json:"events,omitempty"`
}

func (s *Server) handleFeedback(ctx *fasthttp.RequestCtx) error {
	start := time.Now()
	body := ctx.PostBody()
	if len(body) == 0 {
		return badRequest("empty body: want an event or {\"events\": [...]}")
	}
	if d := jsonDepth(body, s.cfg.MaxJSONDepth); d > s.cfg.MaxJSONDepth {
		return badRequest("JSON nested deeper than %d levels", s.cfg.MaxJSONDepth)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return badRequest("invalid JSON: %v", jsonProblem(err))
	}
	var events []feedback.Event
	if raw, ok := probe["events"]; ok {
		if len(probe) != 1 {
			return badRequest("a batch is {\"events\": [...]} with nothing beside it")
		}
		if err := strictJSON(raw, &events); err != nil {
			return badRequest("invalid events: %v", jsonProblem(err))
		}
		if len(events) == 0 {
			return badRequest("empty events")
		}
	} else {
		var e feedback.Event
		if err := strictJSON(body, &e); err != nil {
			return badRequest("invalid event: %v", jsonProblem(err))
		}
		events = []feedback.Event{e}
	}
	if len(events) > s.cfg.MaxFeedbackBatch {
		return &apiError{status: 413, code: "too_large", msg: fmt.Sprintf("%d events exceed the batch limit of %d", len(events), s.cfg.MaxFeedbackBatch)}
	}
	for i := range events {
		if err := s.store.Validate(events[i]); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
	}
	if l := s.engines.acquire(); l != nil {
		// an item the served catalog does not have is refused before anything is written
		for i, e := range events {
			if _, ok := l.eng.Row(e.ItemID); !ok {
				l.release()
				return &apiError{status: 422, code: "unknown_item", msg: fmt.Sprintf("event %d: item %q is not in the catalog of model %s version %s",
					i, e.ItemID, l.eng.Manifest().Name, l.eng.Manifest().Version)}
			}
		}
		l.release()
	}
	c, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	res, err := s.store.Append(c, events...)
	if err != nil {
		if errors.Is(err, feedback.ErrNotAcknowledged) {
			// not acknowledged in time (a NATS node lost, a leader being elected): a retry
			// with the same event ids is safe
			return &apiError{status: 503, code: "log_unavailable", msg: err.Error(), retryAfter: 1}
		}
		if errors.Is(err, feedback.ErrUnavailable) || !s.store.Healthy() {
			// readiness answers 503 for as long as the log says so (handleReady)
			return &apiError{status: 503, code: "log_unavailable", msg: err.Error(), retryAfter: 5}
		}
		return err
	}
	s.m.feedbackAck.Observe(time.Since(start).Seconds())
	// Durable: apply to live state (histories, popularity, trending, co-occurrence) before
	// answering, so that the next request sees it. Should that fail, the follower applies it.
	if _, err := s.live.CatchUp(s.store); err != nil {
		s.log.Warn("live state: catching up with the feedback log", "err", err)
	}
	s.wakeFollower()
	writeJSON(ctx, 200, map[string]any{"accepted": res.Accepted, "duplicates": res.Duplicates})
	return nil
}

// strictJSON decodes one JSON value into v, refusing fields v does not have (as
// /v1/recommend does) and anything after the value.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

func (s *Server) handleItem(ctx *fasthttp.RequestCtx) error {
	id := strings.TrimPrefix(string(ctx.Path()), "/v1/items/")
	l := s.engines.acquire()
	if l == nil {
		return &apiError{status: 503, code: "not_ready", msg: "no model loaded", retryAfter: 1}
	}
	defer l.release()
	row, ok := l.eng.Row(id)
	if !ok {
		return &apiError{status: 404, code: "not_found", msg: fmt.Sprintf("no item %q", id)}
	}
	it, _ := l.eng.Item(row)
	st := l.eng.Stats()
	writeJSON(ctx, 200, map[string]any{"item_id": it.ID, "title": it.Title, "categories": it.Categories,
		"interactions": st.Count(row), "propensity": st.Propensity(row)})
	return nil
}

func (s *Server) handleUser(ctx *fasthttp.RequestCtx) error {
	id := strings.TrimPrefix(string(ctx.Path()), "/v1/users/")
	v, ok := s.live.User(id, s.cfg.MaxHistory)
	if !ok {
		return &apiError{status: 404, code: "not_found", msg: fmt.Sprintf("no feedback for user %q", id)}
	}
	writeJSON(ctx, 200, v)
	return nil
}

func (s *Server) handleLive(ctx *fasthttp.RequestCtx) error {
	writeJSON(ctx, 200, map[string]string{"status": "live"})
	return nil
}

func (s *Server) handleReady(ctx *fasthttp.RequestCtx) error {
	// the log's health is asked each time: a bbolt write failure stays until a restart, a
	// NATS connection comes back by itself
	if storeErr := s.store.Err(); !s.ready.Load() || storeErr != nil {
		reason := "starting or stopping"
		if storeErr != nil {
			reason = "feedback log unavailable: " + storeErr.Error()
		}
		ctx.Response.Header.Set("Retry-After", "1")
		writeJSON(ctx, 503, map[string]string{"status": "not ready", "reason": reason})
		return nil
	}
	// serving, with a learner that lost its snapshot or a bundle rollout that failed here
	// (the previous bundle serves): ready, and says so
	out := map[string]string{"status": "ready"}
	if msg := s.snapErr.Load(); msg != nil {
		out["online_snapshot"] = *msg
	}
	if msg := s.rolloutProblem(); msg != "" {
		out["rollout"] = msg
	}
	writeJSON(ctx, 200, out)
	return nil
}

func (s *Server) handleMetrics(ctx *fasthttp.RequestCtx) error {
	body, ct, err := s.m.render()
	if err != nil {
		return err
	}
	ctx.SetContentType(ct)
	ctx.SetBody(body)
	return nil
}

func (s *Server) handleOpenAPI(ctx *fasthttp.RequestCtx) error {
	ctx.SetContentType("application/json")
	ctx.SetBody(openAPISpec)
	return nil
}

func (s *Server) handleReload(ctx *fasthttp.RequestCtx) error {
	var req struct {
		Bundle string `json:"bundle"`
	}
	if len(ctx.PostBody()) > 0 {
		if err := s.decode(ctx, &req); err != nil {
			return err
		}
	}
	start := time.Now()
	eng, err := s.Reload(req.Bundle)
	if err != nil {
		ae := classify(err)
		if ae.status == 500 {
			ae = &apiError{status: 422, code: "reload_failed", msg: err.Error()}
		}
		ae.msg = "reload failed, the previous model keeps serving: " + ae.msg
		return ae
	}
	m := eng.Manifest()
	out := map[string]any{"loaded": map[string]string{"name": m.Name, "version": m.Version},
		"took_ms": time.Since(start).Milliseconds()}
	if r := s.announceRollout(); r != "" { // replicas on a shared log load it too
		out["rollout"] = r
	}
	writeJSON(ctx, 200, out)
	return nil
}

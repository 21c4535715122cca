package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// fuzzServer is a server on the fake bundle, driven in-process through its fasthttp handler.
func fuzzServer(f *testing.F) *Server {
	s, err := NewWithBackend(Config{Bundle: fakeBundle, DataDir: f.TempDir()}, &fakeBackend{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Shutdown() })
	return s
}

// checkAnswer holds for every answer: never a 500 (a panic or an unclassified error), always
// JSON, an error as {"error": {"code", "message"}} whose message names no Go type.
func checkAnswer(t *testing.T, path string, body []byte, ctx *fasthttp.RequestCtx) {
	status := ctx.Response.StatusCode()
	if status >= 500 && status != 503 && status != 504 {
		t.Fatalf("%s %q: status %d %s", path, body, status, ctx.Response.Body())
	}
	var out map[string]any
	if err := json.Unmarshal(ctx.Response.Body(), &out); err != nil {
		t.Fatalf("%s %q: %d answer is not JSON: %q", path, body, status, ctx.Response.Body())
	}
	if status >= 400 {
		e, _ := out["error"].(map[string]any)
		msg, _ := e["message"].(string)
		if e == nil || e["code"] == nil || msg == "" {
			t.Fatalf("%s %q: %d error body %s", path, body, status, ctx.Response.Body())
		}
		for _, bad := range []string{"Go value", "struct", "server.", "feedback.", "recommend.", "*"} {
			if strings.Contains(msg, bad) && !strings.Contains(string(body), bad) {
				t.Fatalf("%s %q: message %q names %q", path, body, msg, bad)
			}
		}
	}
}

func fuzzRoute(f *testing.F, path string, seeds []string) {
	s := fuzzServer(f)
	for _, sd := range seeds {
		f.Add([]byte(sd))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI(path)
		ctx.Request.Header.SetContentType("application/json")
		ctx.Request.SetBody(body)
		s.handle(&ctx)
		checkAnswer(t, path, body, &ctx)
	})
}

// Recommend bodies: whatever arrives is answered with a classified status and a JSON body.
// Seeds (with the committed corpus in testdata/fuzz) cover every field.
func FuzzRecommendBody(f *testing.F) {
	fuzzRoute(f, "/v1/recommend", []string{
		`{"history": ["i1", "i2"], "k": 3}`,
		`{"user_id": "u1", "query": "a western", "k": 5, "mode": "slate", "explain": true}`,
		`{"history": ["i1"], "ips_alpha": 0.5, "exclude_seen": false}`,
		`{"image": "iVBORw0KGgo=", "audio": "UklGRg=="}`,
		`{"history": [[["x"]]]}`, `{"k": 1e400}`, `[]`, `null`, `{"history": ["i1"], "k": -1}`,
	})
}

// Feedback bodies: one event or a batch; whatever arrives is answered with a classified status
// and a JSON body.
func FuzzFeedbackBody(f *testing.F) {
	fuzzRoute(f, "/v1/feedback", []string{
		`{"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "timestamp": 1700000000}`,
		`{"events": [{"event_id": "e2", "user_id": "u1", "item_id": "i2", "type": "rating", "value": 4, "timestamp": 1700000001}]}`,
		`{"events": []}`, `{"event_id": 5}`, `{"event_id": "e3", "user_id": "u1", "item_id": "nope", "type": "click", "timestamp": 1}`,
		`{"events": [null]}`, `"x"`,
	})
}

// Added-item bodies (POST /admin/items): whatever arrives is answered with a classified status
// and a JSON body; what is accepted is added whole.
func FuzzAddItemsBody(f *testing.F) {
	fuzzRoute(f, "/admin/items", []string{
		`{"items": [{"item_id": "n1", "title": "A new film", "categories": ["Drama"], "text": "A drama about a family."}]}`,
		`{"items": [{"item_id": "n2", "title": "With a poster", "image": "iVBORw0KGgo="}]}`,
		`{"items": [{"item_id": "7", "title": "Taken"}]}`, `{"items": []}`, `{"items": [{"item_id": "", "title": ""}]}`,
		`{"items": [{"item_id": "n3", "title": "x", "categories": [""]}]}`, `{"items": null}`, `{}`, `[]`,
		`{"items": [{"item_id": "n4", "title": "x", "extra": 1}]}`,
	})
}

package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/recommend"
)

// BenchmarkRecommendOverHTTP is one caller's recommendation (a 20-item history, k 10) on the
// real bundle with serve's thread policy, in process (the engine's Recommend, which the
// handler calls) and through the server over loopback HTTP (the body encoded once; the answer
// read and discarded): their ns/op give HTTP's share of in-process throughput at one caller.
// http-liveness is the round trip alone.
func BenchmarkRecommendOverHTTP(b *testing.B) {
	cfg := Config{Bundle: bundleDir(b), DataDir: b.TempDir()}.WithDefaults()
	rt, err := ort.Open(ort.Options{Provider: ort.ProviderCPU, IntraOpThreads: cfg.ORTIntraOpThreads()})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	s, err := New(cfg, rt, nil)
	if err != nil {
		b.Fatal(err)
	}
	ts := serve(b, s)
	defer func() { ts.client.CloseIdleConnections(); s.Shutdown() }()
	hist := ts.catalog()[100:120]
	b.Run("engine", func(b *testing.B) {
		l := ts.engines.acquire()
		defer l.release()
		req := recommend.Request{History: hist, K: 10, ExcludeSeen: true}
		for b.Loop() {
			c, cancel := context.WithTimeout(context.Background(), cfg.RequestTimeout)
			if _, err := l.eng.Recommend(c, req); err != nil {
				b.Fatal(err)
			}
			cancel()
		}
	})
	b.Run("http", func(b *testing.B) {
		body, _ := json.Marshal(map[string]any{"history": hist, "k": 10})
		for b.Loop() {
			resp, err := ts.client.Post(ts.url+"/v1/recommend", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	// the same request from fasthttp's client, lighter than net/http's: what the client itself
	// costs on the same cores
	b.Run("http-fasthttp-client", func(b *testing.B) {
		body, _ := json.Marshal(map[string]any{"history": hist, "k": 10})
		c := &fasthttp.Client{}
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(ts.url + "/v1/recommend")
		req.Header.SetMethod("POST")
		req.Header.SetContentType("application/json")
		req.SetBody(body)
		for b.Loop() {
			if err := c.Do(req, resp); err != nil {
				b.Fatal(err)
			}
			if resp.StatusCode() != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode())
			}
		}
	})
	b.Run("http-liveness", func(b *testing.B) {
		for b.Loop() {
			resp, err := ts.client.Get(ts.url + "/healthz/live")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

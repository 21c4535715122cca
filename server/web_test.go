package server

// Tests of the web page (server/web): its files as served, and the page itself in a real
// browser (Chromium, driven through the DevTools protocol by chromedp) against a real server
// on the bundle. Without Chromium the browser tests skip, unless LLM4REC_REQUIRE_BUNDLE=1
// (make test), where they fail: `make deps-browser` installs it. Screenshots go to
// $LLM4REC_ARTIFACTS (default: llm4rec-web-artifacts under the temporary directory);
// LLM4REC_UPDATE_SCREENSHOT=1 also rewrites docs/web-page.png, the README's picture.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/llm4rec/llm4rec/server/web"
)

// webBudget is the most the page's own files may weigh together.
const webBudget = 200 << 10

// The page's files are served without a key (the API still wants one), with their content
// types, security headers and validators; every file the page refers to exists; together
// they stay within the budget.
func TestWebFiles(t *testing.T) {
	ts := start(t, func(c *Config) { c.APIKey, c.AdminKey = "inference-key", "admin-key" })
	r := ts.do("GET", "/", "", nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !bytes.Contains(r.raw, []byte("<title>LLM4Rec</title>")) {
		t.Fatalf("GET /: %d %s %.200s", r.status, r.header.Get("Content-Type"), r.raw)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "ETag", "Cache-Control"} {
		if r.header.Get(h) == "" {
			t.Errorf("GET / lacks %s", h)
		}
	}
	if !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("CSP %q", r.header.Get("Content-Security-Policy"))
	}
	if r := ts.do("GET", "/v1/items?q=a", "", nil); r.status != 401 {
		t.Fatalf("the API without a key: %d", r.status)
	}

	// every /web/ file named by the page or its script exists, and every file is named
	refs := map[string]bool{}
	total := 0
	for _, name := range web.Names() {
		f, _ := web.Lookup(name)
		total += len(f.Body)
		for _, m := range regexp.MustCompile(`/web/([A-Za-z0-9._-]+)`).FindAllSubmatch(f.Body, -1) {
			refs[string(m[1])] = true
		}
	}
	for _, name := range web.Names() {
		if name != web.Index && !refs[name] {
			t.Errorf("%s is embedded but nothing refers to it", name)
		}
	}
	want := map[string]string{"app.js": "text/javascript", "app.css": "text/css", "recorder.js": "text/javascript"}
	for name := range refs {
		r := ts.do("GET", "/web/"+name, "", nil)
		if r.status != 200 || len(r.raw) == 0 {
			t.Errorf("GET /web/%s: %d", name, r.status)
			continue
		}
		if ct, ok := want[name]; ok && !strings.HasPrefix(r.header.Get("Content-Type"), ct) {
			t.Errorf("/web/%s: content type %q, want %s", name, r.header.Get("Content-Type"), ct)
		}
	}
	if len(refs) < len(want) {
		t.Errorf("the page refers to %v", refs)
	}
	if total > webBudget {
		t.Errorf("the page's files weigh %d bytes, over the budget of %d", total, webBudget)
	}
	t.Logf("the page's files: %d bytes (budget %d)", total, webBudget)

	// conditional requests: unchanged files are not sent again
	etag := ts.do("GET", "/web/app.js", "", nil).header.Get("ETag")
	req := func(inm string) int {
		h, _ := http.NewRequest("GET", ts.url+"/web/app.js", nil)
		h.Header.Set("If-None-Match", inm)
		resp, err := ts.client.Do(h)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := req(etag); got != 304 {
		t.Errorf("If-None-Match %s: %d, want 304", etag, got)
	}
	if got := req(`"other", ` + etag); got != 304 {
		t.Errorf("If-None-Match list: %d, want 304", got)
	}
	if got := req(`"other"`); got != 200 {
		t.Errorf("If-None-Match other: %d, want 200", got)
	}

	for path, status := range map[string]int{"/web/nope.js": 404, "/web/": 404, "/web/a/b": 404, "/favicon.ico": 404, "/index.html": 404} {
		if r := ts.do("GET", path, "", nil); r.status != status || r.errCode() != "not_found" {
			t.Errorf("GET %s: %d %s, want %d", path, r.status, r.raw, status)
		}
	}
	if r := ts.do("POST", "/", "", "x"); r.status != 405 {
		t.Errorf("POST /: %d, want 405", r.status)
	}
}

// browser is one headless Chromium tab with what its console reported.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // where screenshots go

	mu      sync.Mutex
	phase   string
	console []consoleEntry
}

type consoleEntry struct {
	phase, source, text, url string
}

// chromiumPath is the browser the tests drive: $LLM4REC_CHROMIUM, else Debian's.
func chromiumPath(t *testing.T) string {
	path := os.Getenv("LLM4REC_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("LLM4REC_REQUIRE_BUNDLE") == "1" {
			t.Fatalf("chromium %s missing (%v) and LLM4REC_REQUIRE_BUNDLE=1: run `make deps-browser`", path, err)
		}
		t.Skipf("chromium %s missing (%v): run `make deps-browser`, or set LLM4REC_REQUIRE_BUNDLE=1 to fail here", path, err)
	}
	return path
}

// artifactDir is where the browser tests write screenshots: $LLM4REC_ARTIFACTS, else a
// folder under the system's temporary directory. It is kept after the test.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("LLM4REC_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "llm4rec-web-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newBrowser starts Chromium for t, headless, with a fake microphone (a synthetic tone) that
// the page may use without asking; everything it does is bounded by timeout.
func newBrowser(t *testing.T, timeout time.Duration) *browser {
	path := chromiumPath(t)
	b := &browser{t: t, dir: artifactDir(t), phase: "start"}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path),
		chromedp.NoSandbox, // the sandbox needs user namespaces, which containers often lack
		chromedp.WindowSize(1280, 1000),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithListener(b.listen))
	t.Cleanup(func() {
		bcancel()
		acancel()
		cancel()
	})
	b.ctx = bctx
	b.do(chromedp.EmulateViewport(1280, 1000))
	return b
}

// listen keeps every error the page's console reports: console.error and failed assertions,
// uncaught exceptions, and error entries of the browser's log (failed loads, CSP refusals).
func (b *browser) listen(ev any) {
	var e consoleEntry
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var args []string
		for _, a := range ev.Args {
			args = append(args, string(a.Value)+a.Description)
		}
		e = consoleEntry{source: "console." + string(ev.Type), text: strings.Join(args, " ")}
	case *runtime.EventExceptionThrown:
		e = consoleEntry{source: "exception", text: ev.ExceptionDetails.Text}
		if ex := ev.ExceptionDetails.Exception; ex != nil {
			e.text += " " + ex.Description
		}
	case *log.EventEntryAdded:
		if ev.Entry.Level != log.EntryLevelError {
			return
		}
		e = consoleEntry{source: string(ev.Entry.Source), text: ev.Entry.Text, url: ev.Entry.URL}
	default:
		return
	}
	b.mu.Lock()
	e.phase = b.phase
	b.console = append(b.console, e)
	b.mu.Unlock()
}

func (b *browser) setPhase(p string) {
	b.mu.Lock()
	b.phase = p
	b.mu.Unlock()
}

// errorsOutside returns the console errors other than the network failures expected in
// phase: a failed API call logs one (status and URL), which the page then explains.
func (b *browser) errorsOutside(phase, url string, status int) (unexpected []string, expected int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.console {
		if e.phase == phase && e.source == "network" && strings.Contains(e.url, url) && strings.Contains(e.text, fmt.Sprint(status)) {
			expected++
			continue
		}
		unexpected = append(unexpected, fmt.Sprintf("[%s] %s: %s %s", e.phase, e.source, e.text, e.url))
	}
	return unexpected, expected
}

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.screenshot("failure")
		b.t.Fatalf("browser (phase %s): %v", b.phase, err)
	}
}

// eval runs a JavaScript expression in the page and decodes its value into T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("browser (phase %s): evaluate %.80s: %v", b.phase, expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it holds, at most d.
func (b *browser) waitFor(what, cond string, d time.Duration) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		b.screenshot("failure")
		status := eval[string](b, `document.getElementById('status') ? document.getElementById('status').textContent + ' | ' + document.getElementById('error').textContent : ''`)
		b.t.Fatalf("browser (phase %s): waiting %s for %s: %v (page says: %s)", b.phase, d, what, err, status)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ''`, sel))
}

func (b *browser) screenshot(name string) string {
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// writePoster writes a 240x360 PNG poster (bands of colour with a disc) into dir.
func writePoster(t *testing.T, dir string) string {
	img := image.NewRGBA(image.Rect(0, 0, 240, 360))
	for y := range 360 {
		for x := range 240 {
			c := color.RGBA{uint8(20 + y/3), uint8(40 + x/2), 160, 255}
			if dx, dy := x-120, y-150; dx*dx+dy*dy < 60*60 {
				c = color.RGBA{240, 200, 40, 255}
			}
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "poster.png", buf.Bytes())
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkWAV checks a recording as the page sends it: a 16-bit mono PCM WAV at 16 kHz of at
// least minSecs seconds that is not silent. It returns the duration.
func checkWAV(t *testing.T, wav []byte, minSecs float64) float64 {
	t.Helper()
	if len(wav) < 44 || string(wav[0:4]) != "RIFF" || string(wav[8:12]) != "WAVE" || string(wav[12:16]) != "fmt " || string(wav[36:40]) != "data" {
		t.Fatalf("recording is not a canonical WAV: % x", wav[:min(len(wav), 44)])
	}
	le := binary.LittleEndian
	format, channels, rate, bits := le.Uint16(wav[20:]), le.Uint16(wav[22:]), le.Uint32(wav[24:]), le.Uint16(wav[34:])
	if format != 1 || channels != 1 || rate != 16000 || bits != 16 || le.Uint32(wav[40:]) != uint32(len(wav)-44) || le.Uint32(wav[4:]) != uint32(len(wav)-8) {
		t.Fatalf("recording: format %d, %d channels, %d Hz, %d bits, data %d of %d bytes", format, channels, rate, bits, le.Uint32(wav[40:]), len(wav)-44)
	}
	peak := 0
	for i := 44; i+1 < len(wav); i += 2 {
		peak = max(peak, int(math.Abs(float64(int16(le.Uint16(wav[i:]))))))
	}
	secs := float64(len(wav)-44) / 2 / 16000
	if secs < minSecs || secs > 10.01 {
		t.Fatalf("recording of %.2f s, want %.1f to 10 s", secs, minSecs)
	}
	if peak < 300 {
		t.Fatalf("recording of %.2f s is silent (peak %d)", secs, peak)
	}
	return secs
}

// The page in a real browser against the real bundle: a history built from three catalog
// searches, a query, a poster, a recorded voice (the fake microphone's tone through the
// page's own WAV encoder), ten explained results with the context, provider, bundle and
// stage timings, feedback that changes the history and the list, an API error shown in
// words, checks made before uploading, labels, focus order and contrast, a phone-sized
// window, and no console errors. The time from the click to the first list is logged.
func TestWebPageInBrowser(t *testing.T) {
	b := newBrowser(t, 3*time.Minute)
	ts := bundleServer(t)
	files := t.TempDir()

	b.setPhase("load")
	b.do(chromedp.Navigate(ts.url + "/"))
	b.waitFor("the page's script", `typeof llm4rec === 'object' && document.getElementById('user-id').value.startsWith('web-')`, 10*time.Second)

	// keyboard: every control has a label, every button a name, focus follows the reading
	// order and is visible
	if bad := eval[[]string](b, `[...document.querySelectorAll('input, textarea, select')].filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.id)`); len(bad) > 0 {
		t.Errorf("controls without a label: %v", bad)
	}
	if bad := eval[[]string](b, `[...document.querySelectorAll('button, a')].filter(e => !(e.getAttribute('aria-label') || e.textContent.trim())).map(e => e.outerHTML)`); len(bad) > 0 {
		t.Errorf("buttons or links without a name: %v", bad)
	}
	var order []string
	for range 13 {
		b.do(chromedp.KeyEvent(kb.Tab))
		order = append(order, eval[string](b, `document.activeElement.id + (getComputedStyle(document.activeElement).outlineStyle === 'none' ? ' (no focus ring)' : '')`))
	}
	wantOrder := []string{"skip", "api-key", "user-id", "load-user", "search-q", "search", "clear-picks", "query", "image", "record", "k", "detailed", "recommend"}
	if got := strings.Join(order, ","); got != strings.Join(wantOrder, ",") {
		t.Errorf("focus order %s, want %s", got, strings.Join(wantOrder, ","))
	}

	// 1. three items from three catalog searches
	b.setPhase("search")
	for i, q := range []string{"Toy Story", "Star Wars", "Godfather"} {
		b.do(chromedp.Evaluate[chromedp.Void](`document.getElementById('search-q').value = ''`), chromedp.SendKeys(chromedp.ID("search-q"), q), chromedp.Click(chromedp.ID("search")))
		b.waitFor("search results for "+q, fmt.Sprintf(`[...document.querySelectorAll('#search-results .title')].some(e => e.textContent.startsWith(%q))`, q), 10*time.Second)
		n := eval[int](b, `document.querySelectorAll('#search-results li').length`)
		if n != 10 {
			t.Fatalf("search %q: %d results, want 10", q, n)
		}
		if first := b.text("#search-results li:first-child .title"); !strings.HasPrefix(first, q) {
			t.Errorf("search %q: first result %q", q, first)
		}
		b.do(chromedp.Click(chromedp.CSS("#search-results li:first-child button")))
		b.waitFor("the history to grow", fmt.Sprintf(`document.getElementById('history-count').textContent === '%d'`, i+1), 5*time.Second)
	}
	hist := eval[[]string](b, `[...document.querySelectorAll('#history .title')].map(e => e.textContent)`)
	if len(hist) != 3 || !strings.HasPrefix(hist[0], "Toy Story") || !strings.HasPrefix(hist[2], "Godfather") {
		t.Errorf("history %v", hist)
	}
	if added := b.text("#search-results li:first-child button"); added != "Added" {
		t.Errorf("a result already in the history says %q", added)
	}

	// 2. the request: text, a poster, a recorded voice
	b.setPhase("request")
	b.do(chromedp.SendKeys(chromedp.ID("query"), "a funny animated adventure for the family"))
	b.do(chromedp.SetUploadFiles(chromedp.ID("image"), []string{writePoster(t, files)}))
	b.waitFor("the image preview", `document.getElementById('preview').complete && document.getElementById('preview').naturalWidth === 240 && !document.getElementById('image-figure').hidden`, 5*time.Second)
	if cap := b.text("#image-caption"); !strings.Contains(cap, "poster.png") || !strings.Contains(cap, "PNG") {
		t.Errorf("image caption %q", cap)
	}

	b.do(chromedp.Click(chromedp.ID("record")))
	b.waitFor("recording to start", `document.getElementById('record').dataset.recording === 'true' && document.getElementById('record').textContent === 'Stop recording'`, 10*time.Second)
	b.do(chromedp.Sleep(2 * time.Second))
	b.do(chromedp.Click(chromedp.ID("record")))
	b.waitFor("the recording", `document.getElementById('record-status').textContent.startsWith('Recorded')`, 10*time.Second)
	wav, err := base64.StdEncoding.DecodeString(eval[string](b, `llm4rec.recording()`))
	if err != nil {
		t.Fatal(err)
	}
	secs := checkWAV(t, wav, 1.0)
	t.Logf("recorded %.2f s of the fake microphone: %d bytes of WAV", secs, len(wav))
	// the encoder itself, on known samples: clamped, scaled to 16 bits, little-endian
	got := eval[[]int](b, `Array.from(new Uint8Array(llm4rec.encodeWAV(Float32Array.of(0, 0.5, -0.5, 1, -1, 2, -2), 8000)))`)
	want := []byte("RIFF\x32\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x0e\x00\x00\x00")
	for _, s := range []int16{0, 16384, -16384, 32767, -32768, 32767, -32768} {
		want = binary.LittleEndian.AppendUint16(want, uint16(s))
	}
	if gotBytes := intsToBytes(got); !bytes.Equal(gotBytes, want) {
		t.Errorf("encodeWAV:\n got % x\nwant % x", gotBytes, want)
	}

	// 3. ten results, explained, with how they were made; the time from the click is measured
	b.setPhase("recommend")
	b.do(chromedp.Click(chromedp.ID("recommend")))
	b.waitFor("ten results", `document.querySelectorAll('#results > li').length === 10`, 15*time.Second)
	first := eval[float64](b, `performance.getEntriesByName('llm4rec:list')[0].duration`)
	t.Logf("first list shown %.0f ms after the click (history of 3, text, image, %.1f s of voice; explanations)", first, secs)
	items := eval[[]struct {
		ID, Title, Cats, Score string
		Why                    []string
	}](b, `[...document.querySelectorAll('#results > li')].map(li => ({ID: li.id, Title: li.querySelector('h3').textContent,
		Cats: li.querySelector('.cats').textContent, Score: li.querySelector('.score').textContent,
		Why: [...li.querySelectorAll('.why > li')].map(e => e.textContent)}))`)
	for _, it := range items {
		if it.Title == "" || it.Cats == "" || !strings.HasPrefix(it.Score, "score ") || len(it.Why) == 0 || it.Why[0] == "" {
			t.Errorf("result %+v lacks a title, categories, a score or an explanation", it)
		}
	}
	links := eval[[]string](b, `[...document.querySelectorAll('#results .evidence a')].map(a => a.getAttribute('href'))`)
	if len(links) == 0 {
		t.Errorf("no explanation links its evidence")
	}
	if broken := eval[[]string](b, `[...document.querySelectorAll('#results a[href^="#"]')].filter(a => !document.querySelector(a.getAttribute('href'))).map(a => a.getAttribute('href'))`); len(broken) > 0 {
		t.Errorf("evidence links to nothing: %v", broken)
	}
	meta := b.text("#meta")
	for _, w := range []string{"movielens-100k version 1", "Execution providercpu", "Encode", "Fusion", "Generate", "Explain", "Sent", "voice (", "image", "text", "history of 3 items"} {
		if !strings.Contains(meta, w) {
			t.Errorf("how the list was made lacks %q: %s", w, meta)
		}
	}
	if info := b.text("#model-info"); info != "Model: movielens-100k version 1 on cpu" {
		t.Errorf("model line %q", info)
	}
	b.waitFor("the context items' titles", `document.querySelectorAll('#context li').length > 0 && [...document.querySelectorAll('#context .title')].every(e => !e.textContent.startsWith('item '))`, 10*time.Second)

	// 4. feedback: a like and a click each enter the history and change the list
	b.setPhase("feedback")
	for i, typ := range []string{"like", "click"} {
		before := eval[[]string](b, `[...document.querySelectorAll('#results > li')].map(li => li.id)`)
		target := strings.TrimPrefix(before[0], "rec-")
		b.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#results > li:first-child button[data-type=%q]`, typ))))
		b.waitFor(typ+" to reach the history and the list", fmt.Sprintf(`document.getElementById('history-count').textContent === '%d' &&
			document.getElementById('hist-%s') !== null && document.getElementById('rec-%s') === null && document.querySelectorAll('#results > li').length === 10`, 4+i, target, target), 15*time.Second)
		if tag := b.text("#hist-" + target + " .tag"); tag != "feedback" {
			t.Errorf("%s on %s: history entry tagged %q", typ, target, tag)
		}
		after := eval[[]string](b, `[...document.querySelectorAll('#results > li')].map(li => li.id)`)
		if slices.Equal(before, after) {
			t.Errorf("%s on %s: the list did not change", typ, target)
		}
		if s := b.text("#status"); !strings.Contains(s, "10 items for history of "+fmt.Sprint(4+i)+" items") {
			t.Errorf("status after %s: %q", typ, s)
		}
	}
	if bad := contrastProblems(b); len(bad) > 0 {
		t.Errorf("text under 4.5:1 contrast: %v", bad)
	}
	shot := b.screenshot("web-page")
	if os.Getenv("LLM4REC_UPDATE_SCREENSHOT") == "1" && shot != "" {
		// the README's picture of the page: docs/web-page.png, at the top of the page
		buf, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
		if err == nil {
			err = os.WriteFile("../docs/web-page.png", buf, 0o644)
		}
		if err != nil {
			t.Errorf("docs/web-page.png: %v", err)
		}
	}

	// 5. checks before upload: too large, not an image; then an API error shown in words
	b.setPhase("local-checks")
	// a picture dropped on the drop zone (a PNG drawn in the page) takes the image's place
	b.do(chromedp.Evaluate[chromedp.Void](`(() => {
		const c = document.createElement('canvas');
		c.width = 64; c.height = 96;
		const g = c.getContext('2d'); g.fillStyle = '#c03030'; g.fillRect(0, 0, 64, 96);
		c.toBlob((blob) => {
			const dt = new DataTransfer();
			dt.items.add(new File([blob], 'dropped.png', { type: 'image/png' }));
			document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
		}, 'image/png');
	})()`))
	b.waitFor("the dropped picture's preview", `document.getElementById('image-caption').textContent.startsWith('dropped.png') && document.getElementById('preview').naturalWidth === 64`, 5*time.Second)
	big := make([]byte, 9<<20)
	copy(big, "\x89PNG\r\n\x1a\n")
	b.do(chromedp.SetUploadFiles(chromedp.ID("image"), []string{writeFile(t, files, "huge.png", big)}))
	b.waitFor("the size check", `document.getElementById('error').textContent.includes('the limit is 8.0 MiB')`, 5*time.Second)
	b.do(chromedp.SetUploadFiles(chromedp.ID("image"), []string{writeFile(t, files, "notes.png", []byte("just some text, not a picture"))}))
	b.waitFor("the type check", `document.getElementById('error').textContent.includes('“notes.png” is not a JPEG or PNG image')`, 5*time.Second)

	b.setPhase("api-error")
	b.do(chromedp.SetUploadFiles(chromedp.ID("image"), []string{writeFile(t, files, "broken.png", []byte("\x89PNG\r\n\x1a\nthe rest is not a PNG"))}))
	b.waitFor("the broken image's preview slot", `document.getElementById('image-caption').textContent.startsWith('broken.png')`, 5*time.Second)
	b.do(chromedp.Click(chromedp.ID("recommend")))
	b.waitFor("the error", `!document.getElementById('error').hidden && document.getElementById('error').textContent.includes('The server refused the request')`, 10*time.Second)
	msg := b.text("#error")
	if !strings.HasPrefix(msg, "Recommend: The server refused the request (error 400, bad_request). The server said: “") || !strings.Contains(msg, "cannot decode image") {
		t.Errorf("API error shown as %q", msg)
	}
	if role := eval[string](b, `document.getElementById('error').getAttribute('role')`); role != "alert" {
		t.Errorf("the error box has role %q, want alert", role)
	}
	b.screenshot("web-error")
	b.setPhase("after-error")
	b.do(chromedp.Click(chromedp.ID("image-clear")))
	b.do(chromedp.Click(chromedp.ID("recommend")))
	b.waitFor("the list again", `document.getElementById('error').hidden && document.getElementById('status').textContent.startsWith('10 items')`, 15*time.Second)

	// 6. the history alone, detailed: explanations cite history items, linked to the history
	b.setPhase("history-only")
	b.do(chromedp.Evaluate[chromedp.Void](`document.getElementById('query').value = ''`), chromedp.Click(chromedp.ID("audio-clear")),
		chromedp.Click(chromedp.ID("detailed")), chromedp.Click(chromedp.ID("recommend")))
	b.waitFor("the history's list", `document.getElementById('status').textContent.startsWith('10 items for history of 5 items;')`, 15*time.Second)
	histLinks := eval[[]string](b, `[...document.querySelectorAll('#results .evidence a[href^="#hist-"]')].map(a => a.getAttribute('href') + ' ' + a.textContent)`)
	if len(histLinks) == 0 {
		t.Errorf("no explanation of a history-only list links a history item: %v", eval[[]string](b, `[...document.querySelectorAll('#results .why li')].map(e => e.textContent)`))
	} else {
		t.Logf("history evidence links: %d, e.g. %s", len(histLinks), histLinks[0])
		href, _, _ := strings.Cut(histLinks[0], " ")
		b.do(chromedp.Click(chromedp.CSS(`#results .evidence a[href="` + href + `"]`)))
		b.waitFor("the cited history item", fmt.Sprintf(`location.hash === %q && document.activeElement === document.querySelector(%q)`, href, href), 5*time.Second)
	}

	// 7. a phone-sized window: one column, nothing wider than the screen
	b.setPhase("phone")
	b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	// the layout settles after the resize: wait for it, then name what is still too wide
	wideJS := `[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && e.offsetParent !== null).map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 5)`
	var wide []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		wide = eval[[]string](b, wideJS)
		if fits := eval[bool](b, `document.documentElement.scrollWidth <= window.innerWidth && window.innerWidth === 390`); (fits && len(wide) == 0) || time.Now().After(deadline) {
			break
		}
	}
	if len(wide) > 0 || eval[int](b, `document.documentElement.scrollWidth`) > 390 {
		t.Errorf("wider than a phone (390 px): %v", wide)
	}
	if cols := eval[string](b, `getComputedStyle(document.querySelector('main')).gridTemplateColumns`); strings.Contains(cols, " ") {
		t.Errorf("phone layout has columns %q, want one", cols)
	}
	b.screenshot("web-phone")

	lists := eval[[]float64](b, `performance.getEntriesByName('llm4rec:list').map(e => Math.round(e.duration))`)
	t.Logf("every list, ms after its click: %v", lists)
	if s, err := json.Marshal(map[string]any{"first_list_ms": first, "lists_ms": lists, "recording_s": secs}); err == nil {
		os.WriteFile(filepath.Join(b.dir, "web-timings.json"), s, 0o644)
	}

	// 8. the user's live history, loaded by id after a reload (the id stays in the tab): the two
	// items of feedback, not the three added from the search
	b.setPhase("reload")
	user := eval[string](b, `document.getElementById('user-id').value`)
	b.do(chromedp.Reload())
	b.waitFor("the page's script", `typeof llm4rec === 'object' && document.getElementById('history-count').textContent === '0'`, 10*time.Second)
	if again := eval[string](b, `document.getElementById('user-id').value`); again != user {
		t.Errorf("user id after a reload: %q, want %q", again, user)
	}
	b.do(chromedp.Click(chromedp.ID("load-user")))
	b.waitFor("the user's live history", `document.getElementById('history-count').textContent === '2'`, 5*time.Second)
	if s := b.text("#status"); s != "Loaded 2 items of "+user+"'s history." {
		t.Errorf("status after loading the history: %q", s)
	}
	if tags := eval[[]string](b, `[...document.querySelectorAll('#history .tag')].map(e => e.textContent)`); !slices.Equal(tags, []string{"feedback", "feedback"}) {
		t.Errorf("loaded history tagged %v", tags)
	}

	unexpected, expected := b.errorsOutside("api-error", "/v1/recommend", 400)
	if len(unexpected) > 0 {
		t.Errorf("console errors: %s", strings.Join(unexpected, "\n"))
	}
	if expected != 1 {
		t.Errorf("the refused request logged %d network errors in the console, want 1 (is the console listened to?)", expected)
	}
}

func intsToBytes(v []int) []byte {
	out := make([]byte, len(v))
	for i, x := range v {
		out[i] = byte(x)
	}
	return out
}

// contrastProblems lists visible text whose colour has under 4.5:1 contrast (WCAG AA) with
// the background it is drawn on.
func contrastProblems(b *browser) []string {
	return eval[[]string](b, `(() => {
	const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
	const lum = (c) => { const [r, g, b] = rgb(c).slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
	const bg = (e) => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor; const v = rgb(c); if (v.length === 3 || (v.length === 4 && v[3] > 0.5)) return c; } return 'rgb(255, 255, 255)'; };
	const bad = [];
	for (const e of document.querySelectorAll('body *')) {
		if (e.offsetParent === null || ![...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
		const a = lum(getComputedStyle(e).color), c = lum(bg(e));
		const ratio = (Math.max(a, c) + 0.05) / (Math.min(a, c) + 0.05);
		if (ratio < 4.5) bad.push(e.tagName + '#' + e.id + '.' + e.className + ' ' + ratio.toFixed(2));
	}
	return bad.slice(0, 10);
})()`)
}

// With API keys set, the page loads without one, says in words that a key is needed, and
// works once the key is typed; the key stays in the tab's session storage only.
func TestWebPageAPIKey(t *testing.T) {
	ts := start(t, func(c *Config) { c.APIKey, c.AdminKey = "inference-key", "admin-key" })
	b := newBrowser(t, time.Minute)
	b.setPhase("no-key")
	b.do(chromedp.Navigate(ts.url + "/"))
	b.waitFor("the page's script", `typeof llm4rec === 'object'`, 10*time.Second)
	b.do(chromedp.SendKeys(chromedp.ID("search-q"), "Item 4"), chromedp.Click(chromedp.ID("search")))
	b.waitFor("the error", `!document.getElementById('error').hidden`, 5*time.Second)
	if msg := b.text("#error"); !strings.HasPrefix(msg, "Search: The server needs a valid API key: enter it in the “API key” field at the top. The server said: “missing bearer key") {
		t.Errorf("without a key: %q", msg)
	}

	b.setPhase("key")
	b.do(chromedp.SendKeys(chromedp.ID("api-key"), "inference-key"), chromedp.Click(chromedp.ID("search")))
	b.waitFor("results", `document.getElementById('error').hidden && document.querySelectorAll('#search-results li').length === 10`, 5*time.Second)
	if first := b.text("#search-results li:first-child .title"); first != "Item 4" {
		t.Errorf("first result %q, want Item 4", first)
	}
	if k := eval[string](b, `sessionStorage.getItem('llm4rec.key') + '|' + localStorage.length`); k != "inference-key|0" {
		t.Errorf("key storage: %q", k)
	}
	// a user with no feedback yet is not an error
	b.do(chromedp.Click(chromedp.ID("load-user")))
	b.waitFor("the user's history", `document.getElementById('status').textContent.startsWith('No feedback recorded')`, 5*time.Second)
	// a reload keeps the key (same tab) and the page works on
	b.do(chromedp.Reload())
	b.waitFor("the page's script", `typeof llm4rec === 'object'`, 10*time.Second)
	if k := eval[string](b, `document.getElementById('api-key').value`); k != "inference-key" {
		t.Errorf("key after a reload: %q", k)
	}
	unexpected, expected := b.errorsOutside("no-key", "/v1/items", 401)
	// loading a user without feedback is a 404 the page expects: the browser logs it too
	var rest []string
	for _, u := range unexpected {
		if !strings.Contains(u, "[key] network:") || !strings.Contains(u, "404") || !strings.Contains(u, "/v1/users/") {
			rest = append(rest, u)
		}
	}
	if len(rest) > 0 || expected != 1 {
		t.Errorf("console errors (%d expected 401s): %v", expected, rest)
	}
}

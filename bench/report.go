package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/llm4rec/llm4rec/engine/ort"
)

// File names written into an output folder.
const (
	ThroughputJSON       = "throughput.json"
	ThroughputPlot       = "throughput.png"
	ThroughputLatencyPNG = "throughput-latency.png"
	HTTPJSON             = "http.json"
	HTTPPlot             = "http.png"
)

// writeJSONFile writes v, indented, to dir/name (dir is created), through a temporary file
// so that a reader never sees half a report.
func writeJSONFile(dir, name string, v any) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("bench: encode %s: %w", name, err)
	}
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return path, nil
}

// WriteJSON writes the report as dir/throughput.json and returns its path.
func (rep *ThroughputReport) WriteJSON(dir string) (string, error) {
	return writeJSONFile(dir, ThroughputJSON, rep)
}

// WriteJSON writes the report as dir/http.json and returns its path.
func (rep *HTTPReport) WriteJSON(dir string) (string, error) {
	return writeJSONFile(dir, HTTPJSON, rep)
}

func fmtRate(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtMs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// WriteTable prints the report for people: the setup, one row per point, the CUDA/CPU
// ratios, and what each case's sample is.
func (rep *ThroughputReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	what := rep.Bundle
	if what == "" {
		what = rep.Graph
	} else if rep.BundleName != "" {
		what += " (" + rep.BundleName + ")"
	}
	fmt.Fprintf(&b, "throughput of %s\n", what)
	fmt.Fprintf(&b, "onnxruntime %s (%s); %d CPUs", rep.ONNXRuntime, rep.Library, rep.Host.CPUs)
	if rep.Host.CPUModel != "" {
		fmt.Fprintf(&b, " (%s)", rep.Host.CPUModel)
	}
	fmt.Fprintf(&b, "; %gs per point\n", rep.DurationS)
	for _, p := range rep.Providers {
		state := "usable"
		if !p.Usable {
			state = "UNUSABLE, not measured"
		}
		fmt.Fprintf(&b, "provider %-4s %s: %s\n", p.Name, state, p.Reason)
	}
	b.WriteString("\nraw: Session.Run on a prebuilt batch, one caller; batcher: B callers of one sample through engine/batch;\n" +
		"engine: B callers through recommend.Engine (preprocessing included). Latency is per call.\n\n")
	t := newTable("case", "provider", "path", ">batch", ">samples/s", ">p50 ms", ">p99 ms", ">rows/run", ">vs raw")
	prev := ""
	for _, pt := range rep.Points {
		key := string(pt.Provider) + pt.Case
		if prev != "" && key != prev {
			t.gap()
		}
		prev = key
		if pt.Error != "" {
			t.add(pt.Case, string(pt.Provider), string(pt.Path), strconv.Itoa(pt.Batch), "error: "+oneLine(pt.Error, 80))
			continue
		}
		vs := ""
		if pt.Path != PathRaw && pt.VsRaw > 0 {
			vs = fmt.Sprintf("%.2f", pt.VsRaw)
		}
		rows := ""
		if pt.MeanRows > 0 {
			rows = fmt.Sprintf("%.1f", pt.MeanRows)
		}
		t.add(pt.Case, string(pt.Provider), string(pt.Path), strconv.Itoa(pt.Batch),
			fmtRate(pt.SamplesPerSec), fmtMs(pt.Latency.P50), fmtMs(pt.Latency.P99), rows, vs)
	}
	t.write(&b)
	if len(rep.Ratios) > 0 {
		b.WriteString("\nCUDA/CPU (samples/s):\n")
		t := newTable("case", "path", ">batch", ">cuda", ">cpu", ">cuda/cpu")
		for _, r := range rep.Ratios {
			t.add(r.Case, string(r.Path), strconv.Itoa(r.Batch), fmtRate(r.CUDA), fmtRate(r.CPU), fmt.Sprintf("%.1fx", r.Ratio))
		}
		t.write(&b)
	} else if slices.ContainsFunc(rep.Providers, func(p ort.ProviderStatus) bool { return p.Name == ort.ProviderCUDA && !p.Usable }) {
		b.WriteString("\nCUDA/CPU: not measured (cuda unusable, see above)\n")
	}
	if len(rep.Inputs) > 0 {
		b.WriteString("\none sample:\n")
		for _, k := range sortedKeys(rep.Inputs) {
			fmt.Fprintf(&b, "  %-14s %s\n", k, rep.Inputs[k])
		}
	}
	if len(rep.Notes) > 0 {
		b.WriteString("notes:\n")
		for _, k := range sortedKeys(rep.Notes) {
			fmt.Fprintf(&b, "  %-14s %s\n", k, rep.Notes[k])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteTable prints the report for people: totals, one row per request kind, statuses and
// errors.
func (rep *HTTPReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rep.URL, rep.Mode)
	if rep.Mode == "open-loop" {
		fmt.Fprintf(&b, " at %g requests/s", rep.RateAsked)
		if rep.Concurrency > 0 {
			fmt.Fprintf(&b, " (at most %d in flight)", rep.Concurrency)
		}
	} else {
		fmt.Fprintf(&b, " with %d callers", rep.Concurrency)
	}
	fmt.Fprintf(&b, ", %gs; mix %s, feedback share %g\n", rep.DurationS, rep.Mix, rep.FeedbackShare)
	content := "distinct queries, images and audio per request"
	if !rep.UniqueContent {
		content = "queries, images and audio repeat (server caches may answer)"
	}
	fmt.Fprintf(&b, "data: %s; %s\n", rep.Data, content)
	pct := 0.0
	if rep.Requests > 0 {
		pct = 100 * float64(rep.OK) / float64(rep.Requests)
	}
	fmt.Fprintf(&b, "requests %d in %.2fs: rate %s/s, ok %d (%.1f%%), throughput %s/s\n\n",
		rep.Requests, rep.Seconds, fmtRate(rep.Rate), rep.OK, pct, fmtRate(rep.Throughput))
	t := newTable("kind", ">requests", ">ok", ">p50 ms", ">p90 ms", ">p99 ms", ">max ms", "status")
	row := func(name string, n, ok int, s Summary, st map[string]int) {
		t.add(name, strconv.Itoa(n), strconv.Itoa(ok), fmtMs(s.P50), fmtMs(s.P90), fmtMs(s.P99), fmtMs(s.Max), statusLine(st))
	}
	for _, k := range append(slices.Clone(recommendKinds), KindFeedback) {
		if ks := rep.ByKind[k]; ks != nil {
			row(k, ks.Requests, ks.OK, ks.Latency, ks.Status)
		}
	}
	row("all", rep.Requests, rep.OK, rep.Latency, rep.Status)
	t.write(&b)
	if rep.OK > 0 && rep.OK < rep.Requests {
		s := rep.LatencyOK
		fmt.Fprintf(&b, "2xx only: p50 %s, p90 %s, p99 %s, max %s ms\n", fmtMs(s.P50), fmtMs(s.P90), fmtMs(s.P99), fmtMs(s.Max))
	}
	if len(rep.Errors) > 0 {
		b.WriteString("\nerrors:\n")
		type kv struct {
			k string
			v int
		}
		var es []kv
		for k, v := range rep.Errors {
			es = append(es, kv{k, v})
		}
		sort.Slice(es, func(i, j int) bool { return es[i].v > es[j].v || (es[i].v == es[j].v && es[i].k < es[j].k) })
		for _, e := range es {
			fmt.Fprintf(&b, "  %6d  %s\n", e.v, e.k)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// statusLine writes statuses as "200:96 503:4", sorted.
func statusLine(st map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(st) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, st[k]))
	}
	return strings.Join(parts, " ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func oneLine(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// table lays out columns padded to their widest cell; a heading starting with ">" makes its
// column right-aligned (numbers).
type table struct {
	head  []string
	right []bool
	rows  [][]string // nil row: a blank line
}

func newTable(head ...string) *table {
	t := &table{}
	for _, h := range head {
		r := strings.HasPrefix(h, ">")
		t.head = append(t.head, strings.TrimPrefix(h, ">"))
		t.right = append(t.right, r)
	}
	return t
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }
func (t *table) gap()                { t.rows = append(t.rows, nil) }

func (t *table) write(b *strings.Builder) {
	width := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			// a last cell beyond the columns (an error message) does not widen them
			if i < len(width) && !(len(r) < len(t.head) && i == len(r)-1) {
				width[i] = max(width[i], utf8.RuneCountInString(c))
			}
		}
	}
	for _, r := range append([][]string{t.head}, t.rows...) {
		if r == nil {
			b.WriteByte('\n')
			continue
		}
		var line strings.Builder
		for i, c := range r {
			if i > 0 {
				line.WriteString("  ")
			}
			pad := strings.Repeat(" ", max(0, width[i]-utf8.RuneCountInString(c)))
			switch {
			case len(r) < len(t.head) && i == len(r)-1:
				line.WriteString(c)
			case t.right[i]:
				line.WriteString(pad + c)
			default:
				line.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteByte('\n')
	}
}

// Package report holds what the benches' reports share: the host they ran on, tables for
// people, JSON files, PNG plot panels (gonum.org/v1/plot), progress lines, and exact latency
// percentiles (nearest rank over every sample kept, not estimated).
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/llm4rec/llm4rec/engine"
)

// Run begins every bench report: its kind, when it started and the machine it ran on.
type Run struct {
	Kind    string `json:"kind"`
	Started string `json:"started"`
	Host    Host   `json:"host"`
}

// NewRun is the Run of a report of this kind started at start, on this machine.
func NewRun(kind string, start time.Time) Run {
	return Run{Kind: kind, Started: start.UTC().Format(time.RFC3339), Host: ThisHost()}
}

// Host describes the machine a report was measured on.
type Host struct {
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model,omitempty"`
	Go       string `json:"go"`
	Engine   string `json:"engine"`
}

// ThisHost describes this machine.
func ThisHost() Host {
	h := Host{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version(), Engine: engine.Version}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return h
}

// BundleReady says whether dir holds a usable bundle: manifest.json and the fetched
// text_encoder.weights. The error says what is missing and how to get it.
func BundleReady(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		return fmt.Errorf("bench: no model bundle at %s (manifest.json: %w); train one with `make models`", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "text_encoder.weights")); err != nil {
		return fmt.Errorf("bench: bundle %s lacks text_encoder.weights (%w); run scripts/fetch-weights.sh", dir, err)
	}
	return nil
}

// Progressf writes one progress line to w (stderr in the command); nil writes nothing.
func Progressf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

// WriteJSON writes v, indented, to dir/name (dir is created), through a temporary file so
// that a reader never sees half a report, and returns its path.
func WriteJSON(dir, name string, v any) (string, error) {
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

// SplitList splits a comma-separated list, dropping empty fields and spaces.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ParseList reads a comma-separated list with parse, which says what a bad entry lacks
// (e.g. "a positive integer"); an empty list is an error.
func ParseList[T any](s string, parse func(string) (T, bool), want string) ([]T, error) {
	var out []T
	for _, f := range SplitList(s) {
		v, ok := parse(f)
		if !ok {
			return nil, fmt.Errorf("bench: %q is not %s", f, want)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("bench: empty list")
	}
	return out, nil
}

// ParseInts reads a comma-separated list of positive integers, e.g. "1,8,64,256".
func ParseInts(s string) ([]int, error) {
	return ParseList(s, func(f string) (int, bool) { n, err := strconv.Atoi(f); return n, err == nil && n >= 1 }, "a positive integer")
}

// FmtRate formats a rate with three significant digits or more.
func FmtRate(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// FmtMs formats milliseconds with three significant digits or more.
func FmtMs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// SortedKeys returns m's keys in order.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// OneLine is s's first line, cut to n bytes.
func OneLine(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// Table lays out columns padded to their widest cell; a heading starting with ">" makes its
// column right-aligned (numbers).
type Table struct {
	head  []string
	right []bool
	rows  [][]string // nil row: a blank line
}

// NewTable starts a table with its headings.
func NewTable(head ...string) *Table {
	t := &Table{}
	for _, h := range head {
		t.head = append(t.head, strings.TrimPrefix(h, ">"))
		t.right = append(t.right, strings.HasPrefix(h, ">"))
	}
	return t
}

// Add appends a row; a row shorter than the headings ends with a cell (an error message)
// that spans the rest and does not widen the columns.
func (t *Table) Add(cells ...string) { t.rows = append(t.rows, cells) }

// Gap appends a blank line.
func (t *Table) Gap() { t.rows = append(t.rows, nil) }

// Write lays the table out into b.
func (t *Table) Write(b *strings.Builder) {
	width := make([]int, len(t.head))
	all := append([][]string{t.head}, t.rows...)
	for _, r := range all {
		for i, c := range r {
			if i < len(width) && !(len(r) < len(t.head) && i == len(r)-1) {
				width[i] = max(width[i], utf8.RuneCountInString(c))
			}
		}
	}
	for _, r := range all {
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

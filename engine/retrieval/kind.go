package retrieval

import (
	"fmt"
	"strings"
)

// IndexKind names an Index implementation (Config.Index of the engine).
type IndexKind string

const (
	// IndexAuto is the default: IndexExact for catalogs under AutoIVFItems items, IndexIVF
	// from there on.
	IndexAuto IndexKind = "auto"
	// IndexExact scans every item (Exact).
	IndexExact IndexKind = "exact"
	// IndexHNSW is an approximate index, a hierarchical navigable small-world graph
	// (github.com/coder/hnsw) over the same rows (HNSW).
	IndexHNSW IndexKind = "hnsw"
	// IndexIVF is an approximate index, an inverted file over k-means clusters of the rows
	// (IVF).
	IndexIVF IndexKind = "ivf"
)

// IndexKinds lists the kinds for flag help.
const IndexKinds = "auto (the default: exact under 20000 items, ivf from there), exact (scan every item), ivf (approximate: scan the clusters nearest to the query) or hnsw (approximate graph search)"

// AutoIVFItems is the catalog size from which IndexAuto builds an IVF index: below it the
// exact scan takes under about 2 ms on one core (0.1 ms at 1,682 items, 14 ms at 100,000:
// bench/README.md, bench scale) and is exact; at and above it the inverted file saves most of
// the scan.
const AutoIVFItems = 20000

// ParseIndexKind reads an index kind; "" is IndexAuto.
func ParseIndexKind(s string) (IndexKind, error) {
	switch k := IndexKind(strings.ToLower(strings.TrimSpace(s))); k {
	case "", IndexAuto:
		return IndexAuto, nil
	case IndexExact, IndexHNSW, IndexIVF:
		return k, nil
	}
	return "", fmt.Errorf("retrieval: unknown index %q: want %s", s, IndexKinds)
}

// New builds the index of kind over vectors (row-major [n, dim]); "" is IndexAuto.
func New(kind IndexKind, vectors []float32, dim int) (Index, error) {
	return newIndex(kind, vectors, dim, false)
}

// NewShared is New over unit rows that the caller keeps unchanged while the index lives: the
// inverted file then reads them in place (IVFConfig.Shared) instead of keeping its own copy.
func NewShared(kind IndexKind, unit []float32, dim int) (Index, error) {
	return newIndex(kind, unit, dim, true)
}

func newIndex(kind IndexKind, vectors []float32, dim int, shared bool) (Index, error) {
	if kind == "" || kind == IndexAuto {
		kind = IndexExact
		if dim > 0 && len(vectors)/dim >= AutoIVFItems {
			kind = IndexIVF
		}
	}
	switch kind {
	case IndexExact:
		return NewExact(vectors, dim)
	case IndexHNSW:
		return NewHNSW(vectors, dim, HNSWConfig{})
	case IndexIVF:
		return NewIVF(vectors, dim, IVFConfig{Shared: shared})
	}
	return nil, fmt.Errorf("retrieval: unknown index %q: want %s", kind, IndexKinds)
}

// KindOf names the kind of a built index ("" for an Index of another package).
func KindOf(x Index) IndexKind {
	switch x.(type) {
	case *Exact:
		return IndexExact
	case *IVF:
		return IndexIVF
	case *HNSW:
		return IndexHNSW
	}
	return ""
}

//go:build !race

// Package racemode tells tests whether the race detector is on.
package racemode

// Enabled reports whether the race detector is on. Under it sync.Pool drops a share of what it
// is given at random, so tests that count allocations of pooled code skip and run in the
// build without it (make test runs them so).
const Enabled = false

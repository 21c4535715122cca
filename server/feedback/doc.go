// Package feedback is the server's durable store of user feedback events (views, clicks,
// ratings, purchases).
//
// An Append returns only after its events are on disk: the write transaction that holds them
// has committed with fsync. Events are deduplicated by EventID, so a client may retry an
// Append whose answer it did not see. Every stored event gets a sequence number, 1, 2, 3, ...
// in append order; Replay reads them back in that order, and snapshots let derived state
// (popularity counts, user histories) be saved with the sequence number it reflects so that a
// restart replays only what came after.
//
// # Why bbolt
//
// The store is one go.etcd.io/bbolt file, dir/feedback.db. bbolt is a pure-Go B+tree in a
// single memory-mapped file, used by etcd and kept well: no server to run, no cgo, one file
// to back up. Its write transactions are ACID and a commit calls fdatasync before it returns
// (unless NoSync is set), so "committed" means "durable". Its DB.Batch coalesces the write
// transactions of concurrent callers into one transaction and one fsync: group commit. A
// lone fsync costs a fraction of a millisecond to several milliseconds depending on the disk;
// shared by every Append in flight, it lets many thousand durable events a second through
// without any caller giving up the guarantee. The price is a short wait
// (Config.MaxBatchDelay) while a group forms; an Append that finds no other in flight skips
// that wait and commits alone.
//
// # Layout
//
// Bucket "events" maps the 8-byte big-endian sequence number to the event (a small versioned
// binary record); its bucket sequence is the last sequence number. Bucket "ids" maps each
// EventID to its sequence number: the dedup index, which lives in the same transaction as
// the events, so a crash can never leave one without the other. Bucket "snapshots" maps a
// snapshot name to its sequence number and bytes; "meta" holds the format version.
//
// # Errors
//
// The sentinels map to HTTP answers: ErrInvalid and ErrTooMany to 400, ErrConflict to 409,
// ErrUnavailable and ErrClosed to 503.
package feedback

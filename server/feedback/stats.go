package feedback

// Stats is a point-in-time copy of a store's counters, for metrics. Counters start at zero
// when the Store is opened; they are not persisted.
type Stats struct {
	// Appended counts events stored; Duplicates counts events skipped because their EventID
	// was already stored with the same content.
	Appended   uint64
	Duplicates uint64
	// Conflicts counts Append calls refused with ErrConflict.
	Conflicts uint64
	// Commits counts write transactions of Append that committed, each with one fsync.
	// Appended / Commits is the mean number of events per group commit.
	Commits uint64
	// LastSeq is the highest sequence number committed.
	LastSeq uint64
	// Healthy is false after a write failure or Close; see Store.Err.
	Healthy bool
}

package feedback

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// MaxSnapshotBytes is the largest snapshot PutSnapshot takes: bbolt's largest value less the
// 8 bytes of the sequence number (about 2 GiB).
const MaxSnapshotBytes = bolt.MaxValueSize - 8

// PutSnapshot saves data under name as derived state that reflects every event up to and
// including seq, replacing any earlier snapshot of that name; it returns once the snapshot is
// durable. seq may not exceed LastSeq. A restart loads the snapshot with GetSnapshot and calls
// Replay(seq+1, ...). Names are 1 to 128 bytes. data is copied; the caller keeps
// it. A write failure makes the store unavailable, as for Append.
func (s *Store) PutSnapshot(name string, seq uint64, data []byte) error {
	if name == "" || len(name) > MaxIDLen {
		return fmt.Errorf("feedback: snapshot name must be 1 to %d bytes, got %d", MaxIDLen, len(name))
	}
	if len(data) > MaxSnapshotBytes {
		return fmt.Errorf("feedback: snapshot %q: %d bytes, limit %d", name, len(data), MaxSnapshotBytes)
	}
	if last := s.LastSeq(); seq > last {
		return fmt.Errorf("feedback: snapshot %q at seq %d is past the last seq %d", name, seq, last)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return ErrClosed
	}
	if f := s.failure.Load(); f != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, *f)
	}
	val := make([]byte, 8+len(data))
	binary.BigEndian.PutUint64(val, seq)
	copy(val[8:], data)
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSnapshots).Put([]byte(name), val)
	})
	if err != nil {
		s.fail(err)
		return fmt.Errorf("%w: put snapshot %q: %w", ErrUnavailable, name, err)
	}
	return nil
}

// GetSnapshot returns the snapshot saved under name: the sequence number it reflects and a
// copy of its bytes. ok is false when there is none.
func (s *Store) GetSnapshot(name string) (seq uint64, data []byte, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSnapshots).Get([]byte(name))
		if v == nil {
			return nil
		}
		if len(v) < 8 {
			return fmt.Errorf("snapshot %q: %w", name, errCorrupt)
		}
		seq, data, ok = binary.BigEndian.Uint64(v), append([]byte{}, v[8:]...), true
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return 0, nil, false, err
		}
		return 0, nil, false, fmt.Errorf("get snapshot %q: %w", name, err)
	}
	return seq, data, ok, nil
}

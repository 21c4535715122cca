package feedback

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxIDLen is the most bytes an EventID, UserID or ItemID may have (128). Ids are keys of the
// dedup index and of every derived table; bounding them bounds the index and request sizes.
const MaxIDLen = 128

// DefaultTypes is the set of event types a Store accepts when Config.Types is empty.
var DefaultTypes = []string{"view", "click", "like", "dislike", "rating", "add_to_cart", "purchase", "share", "skip"}

// DefaultMaxFutureSkew is how far past the receiving clock an event's timestamp may lie
// (1 hour): enough for client clocks that drift, short enough that a timestamp sent in
// milliseconds where seconds are expected (year 55000) is caught.
const DefaultMaxFutureSkew = time.Hour

// Event is one piece of user feedback.
//
// In JSON it reads
//
//	{"event_id":"e1","user_id":"u1","item_id":"i9","type":"click","timestamp":"2024-05-01T12:00:00Z","value":1}
//
// where "timestamp" is either an RFC 3339 string or a JSON number of Unix seconds (fractions
// allowed, e.g. 1714564800.25), and "value" may be left out (0). The store keeps timestamps
// to the millisecond: Append truncates, and Replay returns them in UTC. Output JSON always
// writes the timestamp as RFC 3339 in UTC with milliseconds.
type Event struct {
	// EventID identifies the event for deduplication: a client that retries sends the same
	// id, and the store keeps the event once. 1 to 128 bytes of UTF-8.
	EventID string `json:"event_id"`
	// UserID and ItemID name who acted on what; 1 to 128 bytes of UTF-8 each.
	UserID string `json:"user_id"`
	ItemID string `json:"item_id"`
	// Type is one of the store's allowed types (DefaultTypes unless configured), compared
	// exactly (case-sensitive).
	Type string `json:"type"`
	// Timestamp is when the user acted. It must be set (neither the zero time nor at or
	// before the Unix epoch) and not lie more than the store's MaxFutureSkew ahead of now.
	Timestamp time.Time `json:"timestamp"`
	// Value is optional: a rating, a dwell time in seconds, a price; 0 when absent. It must
	// be finite.
	Value float64 `json:"value,omitempty"`
}

// ValidationError says which field of an event is wrong and why. It matches ErrInvalid
// with errors.Is.
type ValidationError struct {
	Field  string // JSON name of the field: "event_id", "user_id", "item_id", "type", "timestamp", "value"
	Reason string
}

func (e *ValidationError) Error() string {
	return "feedback: invalid event: " + e.Field + ": " + e.Reason
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// checkAppend is what every log checks before it stores anything of an Append: the number of
// events (at most max) and each event against the rules, the first bad one named by index.
func (r rules) checkAppend(events []Event, max int, now time.Time) error {
	if len(events) > max {
		return fmt.Errorf("%w: %d events, limit %d", ErrTooMany, len(events), max)
	}
	for i := range events {
		if err := r.check(&events[i], now); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
	}
	return nil
}

// rules is the validation policy of a store.
type rules struct {
	types         map[string]struct{}
	maxFutureSkew time.Duration
}

func newRules(types []string, skew time.Duration) rules {
	if len(types) == 0 {
		types = DefaultTypes
	}
	if skew <= 0 {
		skew = DefaultMaxFutureSkew
	}
	r := rules{types: make(map[string]struct{}, len(types)), maxFutureSkew: skew}
	for _, t := range types {
		r.types[t] = struct{}{}
	}
	return r
}

var defaultRules = newRules(nil, 0)

// Validate checks the event against the default rules (DefaultTypes, DefaultMaxFutureSkew).
// A Store checks events against its own configuration; use Store.Validate for that.
func (e Event) Validate() error { return defaultRules.check(&e, time.Now()) }

func (r *rules) check(e *Event, now time.Time) error {
	if err := checkID("event_id", e.EventID); err != nil {
		return err
	}
	if err := checkID("user_id", e.UserID); err != nil {
		return err
	}
	if err := checkID("item_id", e.ItemID); err != nil {
		return err
	}
	if e.Type == "" {
		return &ValidationError{Field: "type", Reason: "empty"}
	}
	if _, ok := r.types[e.Type]; !ok {
		return &ValidationError{Field: "type", Reason: fmt.Sprintf("unknown type %.64q", e.Type)}
	}
	if e.Timestamp.IsZero() || e.Timestamp.UnixMilli() <= 0 {
		return &ValidationError{Field: "timestamp", Reason: "missing (zero or not after the Unix epoch)"}
	}
	if limit := now.Add(r.maxFutureSkew); e.Timestamp.After(limit) {
		return &ValidationError{Field: "timestamp", Reason: fmt.Sprintf("%s is more than %s in the future",
			e.Timestamp.UTC().Format(time.RFC3339), r.maxFutureSkew)}
	}
	if math.IsNaN(e.Value) || math.IsInf(e.Value, 0) {
		return &ValidationError{Field: "value", Reason: "not a finite number"}
	}
	return nil
}

func checkID(field, id string) error {
	switch {
	case id == "":
		return &ValidationError{Field: field, Reason: "empty"}
	case len(id) > MaxIDLen:
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%d bytes, more than %d", len(id), MaxIDLen)}
	case !utf8.ValidString(id):
		return &ValidationError{Field: field, Reason: "not valid UTF-8"}
	}
	return nil
}

// jsonEvent is the wire shape; the timestamp is decoded by hand.
type jsonEvent struct {
	EventID   string          `json:"event_id"`
	UserID    string          `json:"user_id"`
	ItemID    string          `json:"item_id"`
	Type      string          `json:"type"`
	Timestamp json.RawMessage `json:"timestamp"`
	Value     float64         `json:"value,omitempty"`
}

// jsonTime is the layout MarshalJSON writes: RFC 3339, UTC, milliseconds.
const jsonTime = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON writes the event with its timestamp as RFC 3339 in UTC with milliseconds.
func (e Event) MarshalJSON() ([]byte, error) {
	ts := ""
	if !e.Timestamp.IsZero() {
		ts = e.Timestamp.UTC().Format(jsonTime)
	}
	raw, err := json.Marshal(ts)
	if err != nil {
		return nil, err
	}
	return json.Marshal(jsonEvent{
		EventID: e.EventID, UserID: e.UserID, ItemID: e.ItemID, Type: e.Type,
		Timestamp: raw, Value: e.Value,
	})
}

// UnmarshalJSON reads an event whose "timestamp" is an RFC 3339 string or a number of Unix
// seconds. It checks the form of the timestamp only; Validate checks the values.
func (e *Event) UnmarshalJSON(data []byte) error {
	var j jsonEvent
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields() // a misspelt field is an error, not a silently missing value
	if err := dec.Decode(&j); err != nil {
		return err
	}
	ts, err := parseTimestamp(j.Timestamp)
	if err != nil {
		return err
	}
	*e = Event{EventID: j.EventID, UserID: j.UserID, ItemID: j.ItemID, Type: j.Type, Timestamp: ts, Value: j.Value}
	return nil
}

// maxUnixSeconds bounds numeric timestamps (year 5138) so the conversion cannot overflow;
// Validate rejects anything this far ahead anyway.
const maxUnixSeconds = 1e11

func parseTimestamp(raw json.RawMessage) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, &ValidationError{Field: "timestamp", Reason: "bad string"}
		}
		if s == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, &ValidationError{Field: "timestamp", Reason: fmt.Sprintf("%.40q is not RFC 3339", s)}
		}
		return t, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil { // raw is valid JSON: an object, array or boolean lands here
		return time.Time{}, &ValidationError{Field: "timestamp", Reason: "neither an RFC 3339 string nor a number of Unix seconds"}
	}
	if f < -maxUnixSeconds || f > maxUnixSeconds {
		return time.Time{}, &ValidationError{Field: "timestamp", Reason: fmt.Sprintf("%g Unix seconds is out of range", f)}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
}

// Stored form, version 1:
//
//	byte 1 | uvarint len + event_id | user_id | item_id | type | varint unix ms | 8 bytes value bits (big endian)
//
// The encoding is canonical (same event, same bytes), so a redelivered event is recognised
// by comparing bytes.
const encodingV1 = 1

var errCorrupt = errors.New("corrupt event record")

// appendEncoded appends the stored form of e to dst.
func appendEncoded(dst []byte, e *Event) []byte {
	dst = append(dst, encodingV1)
	for _, s := range [...]string{e.EventID, e.UserID, e.ItemID, e.Type} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.AppendVarint(dst, e.Timestamp.UnixMilli())
	v := e.Value + 0 // -0 becomes +0 so equal values encode equally
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(v))
}

// decodeEvent reads the stored form. The strings are copies: b may be bbolt's memory, which
// is valid only inside its transaction.
func decodeEvent(b []byte) (Event, error) {
	if len(b) == 0 || b[0] != encodingV1 {
		return Event{}, errCorrupt
	}
	b = b[1:]
	var fields [4]string
	for i := range fields {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return Event{}, errCorrupt
		}
		fields[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	ms, k := binary.Varint(b)
	if k <= 0 || len(b)-k != 8 {
		return Event{}, errCorrupt
	}
	v := math.Float64frombits(binary.BigEndian.Uint64(b[k:]))
	return Event{
		EventID: fields[0], UserID: fields[1], ItemID: fields[2], Type: fields[3],
		Timestamp: time.UnixMilli(ms).UTC(), Value: v,
	}, nil
}

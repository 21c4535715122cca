package feedback

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// ts0 is a fixed, valid event time.
var ts0 = time.Date(2025, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

func ev(id string) Event {
	return Event{EventID: id, UserID: "u1", ItemID: "i1", Type: "click", Timestamp: ts0, Value: 1}
}

func TestValidate(t *testing.T) {
	now := time.Now()
	id128, id129 := strings.Repeat("a", 128), strings.Repeat("a", 129)
	cases := []struct {
		name  string
		edit  func(*Event)
		field string // "" means valid
	}{
		{"valid", func(*Event) {}, ""},
		{"no value", func(e *Event) { e.Value = 0 }, ""},
		{"event_id 128 bytes", func(e *Event) { e.EventID = id128 }, ""},
		{"user_id 128 bytes", func(e *Event) { e.UserID = id128 }, ""},
		{"item_id 128 bytes", func(e *Event) { e.ItemID = id128 }, ""},
		{"timestamp just ahead", func(e *Event) { e.Timestamp = now.Add(30 * time.Minute) }, ""},
		{"every default type", func(e *Event) { e.Type = DefaultTypes[len(DefaultTypes)-1] }, ""},
		{"empty event_id", func(e *Event) { e.EventID = "" }, "event_id"},
		{"event_id 129 bytes", func(e *Event) { e.EventID = id129 }, "event_id"},
		{"event_id not utf-8", func(e *Event) { e.EventID = "a\xffb" }, "event_id"},
		{"empty user_id", func(e *Event) { e.UserID = "" }, "user_id"},
		{"user_id 129 bytes", func(e *Event) { e.UserID = id129 }, "user_id"},
		{"empty item_id", func(e *Event) { e.ItemID = "" }, "item_id"},
		{"item_id 129 bytes", func(e *Event) { e.ItemID = id129 }, "item_id"},
		{"empty type", func(e *Event) { e.Type = "" }, "type"},
		{"unknown type", func(e *Event) { e.Type = "teleport" }, "type"},
		{"type wrong case", func(e *Event) { e.Type = "Click" }, "type"},
		{"zero timestamp", func(e *Event) { e.Timestamp = time.Time{} }, "timestamp"},
		{"epoch timestamp", func(e *Event) { e.Timestamp = time.Unix(0, 0) }, "timestamp"},
		{"far future timestamp", func(e *Event) { e.Timestamp = now.Add(2 * time.Hour) }, "timestamp"},
		{"milliseconds sent as seconds", func(e *Event) { e.Timestamp = time.Unix(now.UnixMilli(), 0) }, "timestamp"},
		{"NaN value", func(e *Event) { e.Value = math.NaN() }, "value"},
		{"infinite value", func(e *Event) { e.Value = math.Inf(-1) }, "value"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := ev("e1")
			c.edit(&e)
			err := e.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field {
				t.Fatalf("Validate = %v, want a ValidationError on %s", err, c.field)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v does not match ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), "feedback: invalid event: "+c.field+": ") {
				t.Fatalf("message %q", err)
			}
		})
	}
}

func TestStoreRules(t *testing.T) {
	s := openTest(t, t.TempDir(), Config{Types: []string{"play"}, MaxFutureSkew: 24 * time.Hour})
	e := ev("e1")
	if err := s.Validate(e); !errors.Is(err, ErrInvalid) {
		t.Fatalf("click in a store of plays: %v", err)
	}
	e.Type = "play"
	e.Timestamp = time.Now().Add(20 * time.Hour)
	if err := s.Validate(e); err != nil {
		t.Fatalf("valid under the store's rules: %v", err)
	}
	if err := e.Validate(); err == nil {
		t.Fatal("default rules accepted a type and skew only the store allows")
	}
}

func TestJSONTimestamps(t *testing.T) {
	want := time.Date(2024, 5, 1, 12, 0, 0, 250_000_000, time.UTC)
	for _, ts := range []string{
		`"2024-05-01T12:00:00.25Z"`,
		`"2024-05-01T14:00:00.250+02:00"`,
		`1714564800.25`,
		` 1714564800.25 `,
	} {
		var e Event
		in := `{"event_id":"e","user_id":"u","item_id":"i","type":"view","timestamp":` + ts + `,"value":4.5}`
		if err := json.Unmarshal([]byte(in), &e); err != nil {
			t.Fatalf("%s: %v", ts, err)
		}
		if !e.Timestamp.Equal(want) || e.Value != 4.5 || e.EventID != "e" || e.Type != "view" {
			t.Fatalf("%s: got %+v", ts, e)
		}
	}
	var e Event
	if err := json.Unmarshal([]byte(`{"event_id":"e","timestamp":1714564800}`), &e); err != nil || e.Timestamp.Unix() != 1714564800 {
		t.Fatalf("integer seconds: %v %v", e.Timestamp, err)
	}
	for _, bad := range []string{`"yesterday"`, `true`, `{}`, `[1]`, `1e300`, `-1e300`} {
		var e Event
		err := json.Unmarshal([]byte(`{"timestamp":`+bad+`}`), &e)
		if err == nil {
			t.Fatalf("timestamp %s accepted: %v", bad, e.Timestamp)
		}
	}
	for _, missing := range []string{`{}`, `{"timestamp":null}`, `{"timestamp":""}`} {
		var e Event
		if err := json.Unmarshal([]byte(missing), &e); err != nil || !e.Timestamp.IsZero() {
			t.Fatalf("%s: %v %v", missing, e.Timestamp, err)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	e := ev("e1")
	e.Timestamp = e.Timestamp.In(time.FixedZone("x", 3600))
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"event_id":"e1","user_id":"u1","item_id":"i1","type":"click","timestamp":"2025-03-14T15:09:26.535Z","value":1}`
	if string(b) != want {
		t.Fatalf("marshal:\n got %s\nwant %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil || !back.Timestamp.Equal(e.Timestamp) || back.EventID != e.EventID {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	e.Value = 0
	if b, _ := json.Marshal(e); strings.Contains(string(b), "value") {
		t.Fatalf("zero value not omitted: %s", b)
	}
}

func TestEncoding(t *testing.T) {
	e := Event{EventID: strings.Repeat("é", 64), UserID: "u", ItemID: "i", Type: "rating",
		Timestamp: time.Date(2025, 1, 2, 3, 4, 5, 6_789_000, time.UTC), Value: -3.5}
	b := appendEncoded(nil, &e)
	got, err := decodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	e.Timestamp = e.Timestamp.Truncate(time.Millisecond)
	if got != e {
		t.Fatalf("decode:\n got %+v\nwant %+v", got, e)
	}
	for i := range b {
		if _, err := decodeEvent(b[:i]); err == nil {
			t.Fatalf("truncated record of %d bytes decoded", i)
		}
	}
	negZero := ev("e")
	negZero.Value = math.Copysign(0, -1)
	zero := ev("e")
	zero.Value = 0
	if string(appendEncoded(nil, &negZero)) != string(appendEncoded(nil, &zero)) {
		t.Fatal("-0 and 0 encode differently")
	}
}

// FuzzEventJSON feeds arbitrary request bodies to the decoder: it must never panic, and what
// it accepts and Validate passes must survive the store's encoding unchanged.
func FuzzEventJSON(f *testing.F) {
	f.Add([]byte(`{"event_id":"e","user_id":"u","item_id":"i","type":"view","timestamp":"2024-05-01T12:00:00Z"}`))
	f.Add([]byte(`{"event_id":"e","user_id":"u","item_id":"i","type":"rating","timestamp":1714564800.5,"value":4}`))
	f.Add([]byte(`{"timestamp":1e99}`))
	f.Add([]byte(`{"timestamp":"2024-13-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Event
		if err := json.Unmarshal(data, &e); err != nil {
			return
		}
		if e.Validate() != nil {
			return
		}
		got, err := decodeEvent(appendEncoded(nil, &e))
		if err != nil {
			t.Fatalf("decode of a valid event: %v", err)
		}
		if !got.Timestamp.Equal(e.Timestamp.Truncate(time.Millisecond)) || got.EventID != e.EventID || got.Value != e.Value {
			t.Fatalf("round trip changed %+v into %+v", e, got)
		}
	})
}

// FuzzDecode checks that the record decoder rejects damage instead of panicking.
func FuzzDecode(f *testing.F) {
	e := ev("e1")
	f.Add(appendEncoded(nil, &e))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeEvent(b)
	})
}

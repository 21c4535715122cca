package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/llm4rec/llm4rec/engine/bundle"
)

// Debias is the request's `debias`: which popularity corrections apply and how strongly.
//
//	absent or true                        the bundle's (or the server's) default strength
//	false                                 no correction (strength 0)
//	{"popularity": 0.3}                   this strength, within [0, bundle.MaxAlpha]
//	{"group": {"gender": "F"}}            the strength the bundle calibrated for the user's
//	                                      group (manifest ips.group_alpha); exactly one
//	                                      attribute
//
// popularity and group are alternatives: a request gives at most one of them.
type Debias struct {
	Off        bool
	Popularity *float64
	Group      *GroupRef
}

// GroupRef names a user group: an attribute the bundle calibrated (gender, age) and a value.
type GroupRef struct{ Attribute, Value string }

// UnmarshalJSON accepts true, false, null and an object with "popularity" or "group".
func (d *Debias) UnmarshalJSON(b []byte) error {
	switch string(bytes.TrimSpace(b)) {
	case "true", "null":
		*d = Debias{}
		return nil
	case "false":
		*d = Debias{Off: true}
		return nil
	}
	var o struct {
		Popularity *float64          `json:"popularity"`
		Group      map[string]string `json:"group"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return errors.New(`debias: want true, false or an object with "popularity" (a number) or "group" ({"attribute": "value"})`)
	}
	*d = Debias{Popularity: o.Popularity}
	if o.Group != nil {
		if len(o.Group) != 1 {
			return fmt.Errorf("debias.group: name exactly one attribute, got %d", len(o.Group))
		}
		for a, v := range o.Group {
			d.Group = &GroupRef{Attribute: a, Value: v}
		}
	}
	if d.Popularity != nil && d.Group != nil {
		return errors.New("debias: give popularity or group, not both")
	}
	return nil
}

// MarshalJSON writes the value UnmarshalJSON reads.
func (d Debias) MarshalJSON() ([]byte, error) {
	switch {
	case d.Off:
		return []byte("false"), nil
	case d.Popularity != nil:
		return json.Marshal(map[string]float64{"popularity": *d.Popularity})
	case d.Group != nil:
		return json.Marshal(map[string]map[string]string{"group": {d.Group.Attribute: d.Group.Value}})
	}
	return []byte("true"), nil
}

// AppliedDebias is the answer's `debias`: what the ranking applied.
type AppliedDebias struct {
	// Strategy is "default", "off", "popularity" (the request's strength) or "group" (the
	// strength calibrated for Group).
	Strategy string `json:"strategy"`
	// Popularity is the strength of the popularity correction applied (0: none).
	Popularity float64           `json:"popularity"`
	Group      map[string]string `json:"group,omitempty"`
}

// resolveDebias turns the request's debias (and the older ips_alpha) into the strength the
// engine applies: nil for the engine's default. ips is the served bundle's section.
func resolveDebias(d Debias, ipsAlpha *float64, ips bundle.IPSSpec) (*float64, AppliedDebias, error) {
	if ipsAlpha != nil {
		if d.Off || d.Popularity != nil || d.Group != nil {
			return nil, AppliedDebias{}, badRequest("give ips_alpha or debias, not both")
		}
		return checkedAlpha("ips_alpha", *ipsAlpha, "popularity")
	}
	switch {
	case d.Off:
		zero := 0.0
		return &zero, AppliedDebias{Strategy: "off"}, nil
	case d.Popularity != nil:
		return checkedAlpha("debias.popularity", *d.Popularity, "popularity")
	case d.Group != nil:
		if len(ips.GroupAlpha) == 0 {
			return nil, AppliedDebias{}, badRequest("debias.group: the served bundle has no group calibration (manifest ips.group_alpha)")
		}
		byValue, ok := ips.GroupAlpha[d.Group.Attribute]
		if !ok {
			return nil, AppliedDebias{}, badRequest("debias.group: attribute %q not calibrated; the bundle has %s", d.Group.Attribute, keys(ips.GroupAlpha))
		}
		a, ok := byValue[d.Group.Value]
		if !ok {
			return nil, AppliedDebias{}, badRequest("debias.group: %s %q not calibrated; the bundle has %s", d.Group.Attribute, d.Group.Value, keys(byValue))
		}
		return &a, AppliedDebias{Strategy: "group", Group: map[string]string{d.Group.Attribute: d.Group.Value}}, nil
	}
	return nil, AppliedDebias{Strategy: "default"}, nil
}

func checkedAlpha(field string, a float64, strategy string) (*float64, AppliedDebias, error) {
	if math.IsNaN(a) || a < 0 || a > bundle.MaxAlpha {
		return nil, AppliedDebias{}, badRequest("%s %g: must be within [0, %g]", field, a, bundle.MaxAlpha)
	}
	return &a, AppliedDebias{Strategy: strategy}, nil
}

func keys[V any](m map[string]V) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, fmt.Sprintf("%q", k))
	}
	slices.Sort(ks)
	return strings.Join(ks, ", ")
}

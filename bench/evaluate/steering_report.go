package evaluate

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/llm4rec/llm4rec/bench/report"
)

// writeTable prints the section for people: precision@10 per category and condition, the
// means beside the export's, and the query-conditioned NDCG@10.
func (rep *SteeringReport) writeTable(b *strings.Builder) {
	voice := "not measured"
	if rep.Voice != "" {
		voice = "voice " + rep.Voice
	}
	fmt.Fprintf(b, "\nsteering: category precision@10 (share of the top 10 in the asked category), request %q, "+
		"%d users' last %d items, spoken: %s\n", rep.Template, rep.Users, rep.History, voice)
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.4f", *p)
	}
	if len(rep.ByCategory) > 0 {
		t := report.NewTable("category", "phrase", ">none", ">typed", ">spoken", ">typed, no history")
		for _, c := range rep.Categories {
			r, ok := rep.ByCategory[c]
			if !ok {
				continue
			}
			none, typed, alone := r.None, r.Typed, r.TypedNoHistory
			t.Add(c, r.Phrase, f(&none), f(&typed), f(r.Spoken), f(&alone))
		}
		t.Gap()
		t.Add("mean", "", f(rep.PrecisionNone), f(rep.PrecisionTyped), f(rep.PrecisionSpoken), f(rep.PrecisionTypedNoHistory))
		if e := rep.Export; e != nil && e.PrecisionNone != nil {
			t.Add(fmt.Sprintf("export (%d users)", e.Users), "", f(e.PrecisionNone), f(e.PrecisionTyped), f(e.PrecisionSpoken), f(e.PrecisionTypedNoHistory))
		}
		t.Write(b)
	}
	if rep.NDCGWithQuery != nil {
		fmt.Fprintf(b, "\nNDCG@10 with the held-out item's categories typed as the request (%q filled), beside the history alone:\n", rep.Template)
		t := report.NewTable("", ">with category query", ">history only", ">ratio", ">users")
		t.Add("engine", f(rep.NDCGWithQuery), f(rep.NDCGHistoryOnly), f(rep.NDCGRatio), strconv.Itoa(rep.NDCGUsers))
		if e := rep.Export; e != nil && e.NDCGWithQuery != nil {
			t.Add("export", f(e.NDCGWithQuery), f(e.NDCGHistoryOnly), f(e.NDCGRatio), "")
		}
		t.Write(b)
	}
	if e := rep.Export; e != nil && e.Skipped != "" {
		fmt.Fprintf(b, "the export skipped steering: %s\n", e.Skipped)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(b, "note: %s\n", n)
	}
}

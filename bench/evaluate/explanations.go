package evaluate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/explain"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/eval"
)

// DefaultExplainUsers is QualityConfig.ExplainUsers' default.
const DefaultExplainUsers = 100

// ExplainListK is the length of the lists ranks are compared in: the engine's default bound on
// a request's k, so that an item falls out of the list only when it falls far.
const ExplainListK = 100

// The rule explanations followed before they were measured: cite the history item that
// co-occurs most with the recommendation when at least PreviousMinCoOccurrence users had both,
// else the one closest in content when the cosine reaches PreviousMinSimilarity, whatever the
// model did.
const (
	PreviousMinCoOccurrence = 2
	PreviousMinSimilarity   = 0.3
)

// ExplainLatencyTarget is the relative increase of the median latency that explanations
// should stay within on the CPU (+20%); it is reported, never enforced.
const ExplainLatencyTarget = 0.2

// ExplanationsReport is the explanations section of the quality report (RunExplanations).
type ExplanationsReport struct {
	// Evidence is how the engine found its explanations' evidence
	// (recommend.Config.ExplainEvidence: attention or leave_one_out).
	Evidence string `json:"evidence"`
	// Users is how many users' requests were measured; Items how many recommended items their
	// history-only lists hold.
	Users int `json:"users"`
	Items int `json:"items"`
	// Cited is how many similarity explanations (detailed mode) cite a history item; Faithful
	// how many of those items rank worse when the cited item is left out of the history;
	// Faithfulness is Faithful / Cited (nil when nothing was cited).
	Cited        int      `json:"cited"`
	Faithful     int      `json:"faithful"`
	Faithfulness *float64 `json:"faithfulness"`
	// The same for the previous rule (most co-occurring history item, else the closest in
	// content), applied by the bench to the same items.
	PreviousRuleCited        int      `json:"previous_rule_cited"`
	PreviousRuleFaithful     int      `json:"previous_rule_faithful"`
	PreviousRuleFaithfulness *float64 `json:"previous_rule_faithfulness"`
	// PreviousRuleByCoOccurrence is how many of the previous rule's citations came from
	// co-occurrence (the engine's live counts, which only feedback fills), the rest from content.
	PreviousRuleByCoOccurrence int `json:"previous_rule_by_co_occurrence"`
	// QueryTemplate is the typed request (the manifest's steering template, its categories in
	// turn); QueryItems how many items the typed requests' lists hold; QueryMovedItems how many
	// of them rank worse without the query; QueryNamedShare the share of those whose
	// explanation names the query; QueryMentionedShare the share of all QueryItems with a
	// context_query explanation. Nil shares: nothing to divide by, or not measured.
	QueryTemplate       string   `json:"query_template,omitempty"`
	QueryItems          int      `json:"query_items"`
	QueryMovedItems     int      `json:"query_moved_items"`
	QueryNamedShare     *float64 `json:"query_named_share"`
	QueryMentionedShare *float64 `json:"query_mentioned_share"`
	// GeneralShare is the share of the history-only items whose explanation is kind general;
	// FirstKindCounts and FirstTemplateCounts count the first explanation of every item by kind
	// and by template.
	GeneralShare        float64        `json:"general_share"`
	FirstKindCounts     map[string]int `json:"first_kind_counts"`
	FirstTemplateCounts map[string]int `json:"first_template_counts"`
	// Latency of the history-only requests from one caller, without explanations and with
	// one per item, interleaved, LatencyRequests of each; P50Increase is the median with over
	// the median without, minus 1, beside P50IncreaseTarget.
	LatencyRequests     int      `json:"latency_requests"`
	LatencyP50MsWithout float64  `json:"latency_p50_ms_without"`
	LatencyP50MsWith    float64  `json:"latency_p50_ms_with"`
	LatencyP99MsWithout float64  `json:"latency_p99_ms_without"`
	LatencyP99MsWith    float64  `json:"latency_p99_ms_with"`
	P50Increase         float64  `json:"p50_increase"`
	P50IncreaseTarget   float64  `json:"p50_increase_target"`
	Notes               []string `json:"notes,omitempty"`
	Seconds             float64  `json:"seconds"`
}

// ExplainUsers are the first n of users with at least two items before the held-out one.
func ExplainUsers(users []eval.SplitUser, n int) []eval.SplitUser {
	var out []eval.SplitUser
	for _, u := range users {
		if len(out) == n {
			break
		}
		if len(u.TestHistory()) >= 2 {
			out = append(out, u)
		}
	}
	return out
}

// RunExplanations measures the engine's explanations on the first n users of users with at
// least two history items (ExplainUsers), each request with the user's TestHistory, k
// eval.K, the history excluded, IPS strength 0, workers users at once:
//
//   - faithfulness: every similarity explanation of a detailed list cites a history item; the
//     request is run again without every occurrence of it (k ExplainListK) and the citation is
//     faithful when the recommended item ranks worse than in the full request's list of the
//     same length (counterfactualRank, movedDown). The previous rule (previousCitation) is
//     applied to the same items and tested the same way;
//   - query: the same history with a typed request naming a category (the manifest's
//     steering phrase, its categories in turn), one explanation per item: among the items that
//     rank worse without the query, the share whose explanation names it;
//   - the kinds of the history-only lists' first explanations;
//   - latency: the history-only requests without explanations and with one per item, one
//     caller, interleaved.
func RunExplanations(ctx context.Context, env *eval.Env, users []eval.SplitUser, n, workers int, progress io.Writer) (*ExplanationsReport, error) {
	if n < 1 {
		return nil, errors.New("bench: explanations: no user to measure")
	}
	t0 := time.Now()
	eng := env.Engine
	m := &explainRun{eng: eng, items: eng.Items(), users: ExplainUsers(users, n), unit: unitRows(env.Embeddings, env.Dim), dim: env.Dim,
		spec: eng.Manifest().Steering}
	rep := &ExplanationsReport{Evidence: eng.ExplainEvidence(), Users: len(m.users), P50IncreaseTarget: ExplainLatencyTarget,
		FirstKindCounts: map[string]int{}, FirstTemplateCounts: map[string]int{}}
	for _, k := range []explain.Kind{explain.Preference, explain.Similarity, explain.Context, explain.General} {
		rep.FirstKindCounts[string(k)] = 0
	}
	if len(m.users) == 0 {
		rep.Notes = append(rep.Notes, "no user has two items before the held-out one: explanations not measured")
		rep.Seconds = time.Since(t0).Seconds()
		return rep, nil
	}
	if m.spec == nil || len(m.spec.Categories) == 0 {
		m.spec = nil
		rep.Notes = append(rep.Notes, "the bundle's manifest has no steering categories to phrase typed requests from: query explanations not measured")
	} else {
		rep.QueryTemplate = m.spec.Template
	}
	per := make([]userExplanations, len(m.users))
	err := eval.Parallel(ctx, len(m.users), workers, func(i int) error {
		var err error
		per[i], err = m.user(ctx, i)
		return err
	})
	if err != nil {
		return nil, err
	}
	var general, qNamed, qMentioned int
	for _, u := range per {
		rep.Items += len(u.first)
		rep.Cited, rep.Faithful = rep.Cited+u.cited, rep.Faithful+u.faithful
		rep.PreviousRuleCited, rep.PreviousRuleFaithful = rep.PreviousRuleCited+u.prevCited, rep.PreviousRuleFaithful+u.prevFaithful
		rep.PreviousRuleByCoOccurrence += u.prevByCo
		rep.QueryItems, rep.QueryMovedItems = rep.QueryItems+u.qItems, rep.QueryMovedItems+u.qMoved
		qNamed, qMentioned = qNamed+u.qNamed, qMentioned+u.qMentioned
		for _, x := range u.first {
			rep.FirstKindCounts[string(x.Kind)]++
			rep.FirstTemplateCounts[x.Template]++
			if x.Kind == explain.General {
				general++
			}
		}
	}
	rep.Faithfulness = share(rep.Faithful, rep.Cited)
	rep.PreviousRuleFaithfulness = share(rep.PreviousRuleFaithful, rep.PreviousRuleCited)
	if m.spec != nil {
		rep.QueryNamedShare, rep.QueryMentionedShare = share(qNamed, rep.QueryMovedItems), share(qMentioned, rep.QueryItems)
	}
	if s := share(general, rep.Items); s != nil {
		rep.GeneralShare = *s
	}
	report.Progressf(progress, "quality: explanations: %d users' lists measured in %.1fs", len(m.users), time.Since(t0).Seconds())
	if err := m.latency(ctx, rep); err != nil {
		return nil, err
	}
	if rep.PreviousRuleCited > 0 && rep.PreviousRuleByCoOccurrence == 0 {
		rep.Notes = append(rep.Notes, "the engine's live co-occurrence counts (filled by feedback) hold no pair of 2 users here: "+
			"the previous rule cited by content cosine only")
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("ranks are compared in lists of %d (as served, diversity included); a history item left out "+
		"is no longer excluded and is not counted when it appears in the counterfactual list", ExplainListK))
	rep.Seconds = time.Since(t0).Seconds()
	return rep, nil
}

// explainRun is what every user's measurement shares.
type explainRun struct {
	eng   *recommend.Engine
	items []recommend.Item
	users []eval.SplitUser
	unit  []float32 // unit item embeddings, dim per row
	dim   int
	spec  *bundle.SteeringSpec // nil: no typed requests
}

// userExplanations is one user's counts.
type userExplanations struct {
	first                                    []explain.Explanation // each item's first explanation (history only)
	cited, faithful, prevCited, prevFaithful int
	prevByCo                                 int
	qItems, qMoved, qNamed, qMentioned       int
}

// request is the protocol's request for history (item ids) with query, k items.
func request(history []string, query string, k int) recommend.Request {
	zero := 0.0
	return recommend.Request{History: history, Query: query, K: k, ExcludeSeen: true, Alpha: &zero}
}

// recommend runs req and returns the response with its items' catalog rows.
func (m *explainRun) recommend(ctx context.Context, req recommend.Request) (*recommend.Response, []int, error) {
	resp, err := m.eng.Recommend(ctx, req)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: explanations: %w", err)
	}
	rows := make([]int, len(resp.Items))
	for i, it := range resp.Items {
		rows[i], _ = m.eng.Row(it.ItemID)
	}
	return resp, rows, nil
}

func (m *explainRun) list(ctx context.Context, req recommend.Request) ([]int, error) {
	_, rows, err := m.recommend(ctx, req)
	return rows, err
}

// user measures user i's lists: history only in detailed mode (faithfulness, kinds), and
// with a typed request in short mode (query).
func (m *explainRun) user(ctx context.Context, i int) (userExplanations, error) {
	var out userExplanations
	hist := m.users[i].TestHistory()
	ids := eval.IDs(m.items, hist)
	req := request(ids, "", eval.K)
	req.ExplainDetail = true
	resp, top, err := m.recommend(ctx, req)
	if err != nil {
		return out, err
	}
	full, err := m.list(ctx, request(ids, "", ExplainListK))
	if err != nil {
		return out, err
	}
	lists := map[int][]int{} // history row left out -> the list without it
	without := func(h int) ([]int, error) {
		if l, ok := lists[h]; ok {
			return l, nil
		}
		l, err := m.list(ctx, request(eval.IDs(m.items, slices.DeleteFunc(slices.Clone(hist), func(r int) bool { return r == h })), "", ExplainListK))
		lists[h] = l
		return l, err
	}
	faithful := func(row, before, h int) (bool, error) {
		l, err := without(h)
		return err == nil && movedDown(before, counterfactualRank(l, row, h)), err
	}
	for j, it := range resp.Items {
		row := top[j]
		if len(it.Explanations) > 0 {
			out.first = append(out.first, it.Explanations[0])
		}
		before := rankBefore(full, top, row)
		for _, x := range it.Explanations {
			if x.Kind != explain.Similarity || len(x.Evidence) == 0 {
				continue
			}
			h, ok := m.eng.Row(x.Evidence[0])
			if !ok {
				return out, fmt.Errorf("bench: explanations: %s's explanation cites %q, not in the catalog", it.ItemID, x.Evidence[0])
			}
			out.cited++
			ok, err := faithful(row, before, h)
			if err != nil {
				return out, err
			}
			if ok {
				out.faithful++
			}
		}
		co := m.eng.Stats().CoOccurrence
		if h := previousCitation(hist, row, co, m.cosine); h >= 0 {
			out.prevCited++
			if co(h, row) >= PreviousMinCoOccurrence {
				out.prevByCo++
			}
			ok, err := faithful(row, before, h)
			if err != nil {
				return out, err
			}
			if ok {
				out.prevFaithful++
			}
		}
	}
	if m.spec == nil {
		return out, nil
	}
	query := m.spec.Phrase([]string{m.spec.Categories[i%len(m.spec.Categories)]})
	req = request(ids, query, eval.K)
	req.Explain = true
	qresp, qtop, err := m.recommend(ctx, req)
	if err != nil {
		return out, err
	}
	qfull, err := m.list(ctx, request(ids, query, ExplainListK))
	if err != nil {
		return out, err
	}
	for j, it := range qresp.Items {
		row := qtop[j]
		out.qItems++
		named, mentioned := false, false
		for _, x := range it.Explanations {
			named = named || x.Kind == explain.Context && slices.Contains(x.Evidence, string(explain.FromQuery))
			mentioned = mentioned || x.Template == "context_query"
		}
		if mentioned {
			out.qMentioned++
		}
		if movedDown(rankBefore(qfull, qtop, row), counterfactualRank(full, row)) {
			out.qMoved++
			if named {
				out.qNamed++
			}
		}
	}
	return out, nil
}

// latency times every user's history-only request without explanations and with one per item
// from one caller, the two in turn (the first of the pair alternating), and fills the
// latency figures.
func (m *explainRun) latency(ctx context.Context, rep *ExplanationsReport) error {
	var without, with []float64
	for i, u := range m.users {
		ids := eval.IDs(m.items, u.TestHistory())
		for j := range 2 {
			explained := (i+j)%2 == 1
			req := request(ids, "", eval.K)
			req.Explain = explained
			t := time.Now()
			if _, err := m.eng.Recommend(ctx, req); err != nil {
				return fmt.Errorf("bench: explanations: latency: %w", err)
			}
			ms := float64(time.Since(t)) / float64(time.Millisecond)
			if explained {
				with = append(with, ms)
			} else {
				without = append(without, ms)
			}
		}
	}
	slices.Sort(without)
	slices.Sort(with)
	rep.LatencyRequests = len(with)
	rep.LatencyP50MsWithout, rep.LatencyP99MsWithout = report.Percentile(without, 50), report.Percentile(without, 99)
	rep.LatencyP50MsWith, rep.LatencyP99MsWith = report.Percentile(with, 50), report.Percentile(with, 99)
	if rep.LatencyP50MsWithout > 0 {
		rep.P50Increase = rep.LatencyP50MsWith/rep.LatencyP50MsWithout - 1
	}
	return nil
}

// cosine is the content cosine of two items: the dot product of their unit embeddings.
func (m *explainRun) cosine(a, b int) float32 {
	var s float32
	for d, x := range m.unit[a*m.dim : (a+1)*m.dim] {
		s += x * m.unit[b*m.dim+d]
	}
	return s
}

// unitRows are emb's rows (dim values each) scaled to unit length (zero rows stay zero).
func unitRows(emb []float32, dim int) []float32 {
	out := slices.Clone(emb)
	for r := 0; dim > 0 && r+dim <= len(out); r += dim {
		var ss float64
		for _, x := range out[r : r+dim] {
			ss += float64(x) * float64(x)
		}
		if ss == 0 {
			continue
		}
		inv := float32(1 / math.Sqrt(ss))
		for d := r; d < r+dim; d++ {
			out[d] *= inv
		}
	}
	return out
}

// previousCitation is the history item the previous rule cites for row: the first history item
// (row itself aside) with the most co-occurrence with row when it reaches
// PreviousMinCoOccurrence, else the first with the highest content cosine when it reaches
// PreviousMinSimilarity; -1 when neither.
func previousCitation(hist []int, row int, co func(a, b int) float64, cos func(a, b int) float32) int {
	bestCo, coItem := 0.0, -1
	bestSim, simItem := float32(-2), -1
	for _, h := range hist {
		if h == row {
			continue
		}
		if c := co(h, row); c > bestCo {
			bestCo, coItem = c, h
		}
		if s := cos(h, row); s > bestSim {
			bestSim, simItem = s, h
		}
	}
	switch {
	case coItem >= 0 && bestCo >= PreviousMinCoOccurrence:
		return coItem
	case simItem >= 0 && bestSim >= PreviousMinSimilarity:
		return simItem
	}
	return -1
}

// counterfactualRank is row's 1-based rank in list, the rows of left (history items left out
// of the request, which it no longer excludes) not counted; 0 when row is not in list.
func counterfactualRank(list []int, row int, left ...int) int {
	rank := 0
	for _, r := range list {
		if slices.Contains(left, r) {
			continue
		}
		rank++
		if r == row {
			return rank
		}
	}
	return 0
}

// rankBefore is row's 1-based rank in the full request's long list, else (should the long
// list lack it) its place in the served top list.
func rankBefore(long, top []int, row int) int {
	if r := counterfactualRank(long, row); r > 0 {
		return r
	}
	return slices.Index(top, row) + 1
}

// movedDown says whether an item ranked rank (1-based) ranks worse at rankWithout: lower in
// the list, or out of it (0).
func movedDown(rank, rankWithout int) bool {
	return rank > 0 && (rankWithout == 0 || rankWithout > rank)
}

// share is num/den, nil when den is 0.
func share(num, den int) *float64 {
	if den == 0 {
		return nil
	}
	s := float64(num) / float64(den)
	return &s
}

// writeTable prints the section for people: faithfulness beside the previous rule's, the
// typed requests, the kinds of the first explanations and the latency added.
func (rep *ExplanationsReport) writeTable(b *strings.Builder) {
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.4f", *p)
	}
	fmt.Fprintf(b, "\nexplanations, %s evidence: %d users' lists (history only, k %d, alpha 0), %d items; a citation is faithful when the item "+
		"ranks worse without the cited history item (lists of %d):\n", rep.Evidence, rep.Users, eval.K, rep.Items, ExplainListK)
	t := report.NewTable("rule", ">cited", ">faithful", ">faithfulness")
	t.Add(rep.Evidence+" evidence (similarity, detailed)", strconv.Itoa(rep.Cited), strconv.Itoa(rep.Faithful), f(rep.Faithfulness))
	t.Add(fmt.Sprintf("previous rule (co-occurrence >= %d, else cosine >= %g)", PreviousMinCoOccurrence, PreviousMinSimilarity),
		strconv.Itoa(rep.PreviousRuleCited), strconv.Itoa(rep.PreviousRuleFaithful), f(rep.PreviousRuleFaithfulness))
	t.Write(b)
	if rep.QueryTemplate != "" {
		fmt.Fprintf(b, "typed request %q (categories in turn), one explanation per item: %d items, %d rank worse without the query; "+
			"of those, named the query: %s; items with context_query: %s\n", rep.QueryTemplate, rep.QueryItems, rep.QueryMovedItems,
			f(rep.QueryNamedShare), f(rep.QueryMentionedShare))
	}
	kinds := make([]string, 0, len(rep.FirstKindCounts))
	for _, k := range report.SortedKeys(rep.FirstKindCounts) {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, rep.FirstKindCounts[k]))
	}
	tmpls := make([]string, 0, len(rep.FirstTemplateCounts))
	for _, k := range report.SortedKeys(rep.FirstTemplateCounts) {
		tmpls = append(tmpls, fmt.Sprintf("%s %d", k, rep.FirstTemplateCounts[k]))
	}
	fmt.Fprintf(b, "first explanation by kind: %s; general share %.4f\n", strings.Join(kinds, ", "), rep.GeneralShare)
	fmt.Fprintf(b, "first explanation by template: %s\n", strings.Join(tmpls, ", "))
	if rep.LatencyRequests > 0 {
		state := "within"
		if rep.P50Increase > rep.P50IncreaseTarget {
			state = "above"
		}
		fmt.Fprintf(b, "latency, one caller, %d requests each, interleaved:\n", rep.LatencyRequests)
		t := report.NewTable("", ">p50 ms", ">p99 ms")
		t.Add("without explanations", report.FmtMs(rep.LatencyP50MsWithout), report.FmtMs(rep.LatencyP99MsWithout))
		t.Add("with (one per item)", report.FmtMs(rep.LatencyP50MsWith), report.FmtMs(rep.LatencyP99MsWith))
		t.Write(b)
		fmt.Fprintf(b, "p50 increase %+.1f%%, %s the target of %+.0f%%\n", 100*rep.P50Increase, state, 100*rep.P50IncreaseTarget)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(b, "note: %s\n", n)
	}
}

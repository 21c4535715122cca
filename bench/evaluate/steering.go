package evaluate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/eval"
)

// SteeringSeed seeds the choice of the steering evaluation's users in RunQuality. The export
// picks its users with numpy's generator, so the two evaluate different users of the same
// kind: their precision figures compare as two estimates, not to the last digit.
const SteeringSeed uint64 = 0

// espeakTimeout bounds one espeak-ng call: a phrase renders in well under a second, so a call
// that takes longer is stuck.
const espeakTimeout = 30 * time.Second

// CategorySteering is one category's precision@10 under each condition: no request (history
// only), the phrase typed, spoken (nil when not measured) and typed with no history.
type CategorySteering struct {
	Phrase         string   `json:"phrase"`
	None           float64  `json:"none"`
	Typed          float64  `json:"typed"`
	Spoken         *float64 `json:"spoken,omitempty"`
	TypedNoHistory float64  `json:"typed_no_history"`
}

// SteeringFigures are the steering evaluation's figures under the names of the export's
// report.json `steering` section (export/llm4rec_export/steering.py), so that the two compare
// field by field. Absent figures are nil.
type SteeringFigures struct {
	// Categories are the evaluated categories; Users how many users' histories were used,
	// History how many of each user's last items; Template the request phrase.
	Categories []string `json:"categories,omitempty"`
	Users      int      `json:"users"`
	History    int      `json:"history"`
	Template   string   `json:"template,omitempty"`
	// Voice is the espeak-ng voice of the spoken requests, "" when none were measured.
	Voice      string                      `json:"voice,omitempty"`
	ByCategory map[string]CategorySteering `json:"by_category,omitempty"`
	// The means over categories of category precision@10: the share of the top 10 (history
	// excluded) in the requested category.
	PrecisionNone           *float64 `json:"precision@10_none,omitempty"`
	PrecisionTyped          *float64 `json:"precision@10_typed,omitempty"`
	PrecisionSpoken         *float64 `json:"precision@10_spoken,omitempty"`
	PrecisionTypedNoHistory *float64 `json:"precision@10_typed_no_history,omitempty"`
	// NDCGWithQuery is NDCG@10 of the held-out item when the request types its own
	// categories; NDCGHistoryOnly the same users' NDCG@10 without a request; NDCGRatio the
	// first over the second.
	NDCGWithQuery   *float64 `json:"ndcg@10_with_category_query,omitempty"`
	NDCGHistoryOnly *float64 `json:"ndcg@10_history_only,omitempty"`
	NDCGRatio       *float64 `json:"ndcg_ratio,omitempty"`
	// Skipped says why the export measured nothing.
	Skipped string `json:"skipped,omitempty"`
}

// SteeringReport is the result of RunSteering: the engine's figures, the export's beside them
// when its report.json has them, and notes on what was left out.
type SteeringReport struct {
	SteeringFigures
	// NDCGUsers is how many users the query-conditioned NDCG@10 averages over: those with a
	// held-out item that has at least one category.
	NDCGUsers int `json:"ndcg_users"`
	// Export holds the export's figures (report.json), nil when it has none.
	Export  *SteeringFigures `json:"export,omitempty"`
	Notes   []string         `json:"notes,omitempty"`
	Seconds float64          `json:"seconds"`
}

// RunSteering measures how requests steer the engine's lists (the export's steering
// evaluation, export/llm4rec_export/steering.py), every request at IPS strength 0 with the
// history's items excluded, workers requests at once:
//
//   - category precision@10 for each category of spec.Categories, the request being
//     spec.Phrase of the category: spec.Users users drawn with seed among those of users with a
//     held-out item and at least spec.History items before it, each with their last
//     spec.History items as history; with no request, the phrase typed, the phrase spoken by
//     espeak-ng in spec.Voice (left out, with a note, when espeak-ng is unavailable), and the
//     phrase typed with an empty history;
//   - NDCG@10 of the held-out item of every user of users whose held-out item has a category,
//     with the item's categories typed as the request (spec.Phrase) and the whole history,
//     beside the same users' NDCG@10 with the history alone.
func RunSteering(ctx context.Context, eng *recommend.Engine, users []eval.SplitUser, spec *bundle.SteeringSpec, workers int, seed uint64) (*SteeringReport, error) {
	if spec == nil {
		return nil, errors.New("bench: steering: the bundle has no steering section")
	}
	if spec.History < 1 || spec.Users < 1 {
		return nil, fmt.Errorf("bench: steering: the manifest's history (%d) and users (%d) must be positive", spec.History, spec.Users)
	}
	t0 := time.Now()
	workers = max(workers, 1)
	items := eng.Items()
	rep := &SteeringReport{SteeringFigures: SteeringFigures{Categories: spec.Categories, History: spec.History, Template: spec.Template}}

	picked := eval.SteeringUsers(users, spec.History, spec.Users, seed)
	rep.Users = len(picked)
	switch {
	case len(spec.Categories) == 0:
		rep.Notes = append(rep.Notes, "the steering section names no category: category precision not measured")
	case len(picked) == 0:
		rep.Notes = append(rep.Notes, fmt.Sprintf("no user has %d items before the held-out one: category precision not measured", spec.History))
	default:
		hists := make([][]string, len(picked))
		for i, u := range picked {
			h := users[u].TestHistory()
			hists[i] = eval.IDs(items, h[len(h)-spec.History:])
		}
		if err := rep.measurePrecision(ctx, eng, spec, hists, workers); err != nil {
			return nil, err
		}
	}

	var qUsers []eval.SplitUser
	var queries []string
	var targets []int
	for _, su := range users {
		if su.Test >= 0 && len(items[su.Test].Categories) > 0 {
			qUsers = append(qUsers, su)
			queries = append(queries, spec.Phrase(items[su.Test].Categories))
			targets = append(targets, su.Test)
		}
	}
	rep.NDCGUsers = len(qUsers)
	if len(qUsers) == 0 {
		rep.Notes = append(rep.Notes, "no held-out item has a category: query-conditioned NDCG@10 not measured")
	} else {
		withQ, err := eval.Lists(ctx, eng, len(qUsers), workers, func(i int) recommend.Request {
			req := eval.Request(items, qUsers[i].TestHistory(), 0)
			req.Query = queries[i]
			return req
		})
		if err != nil {
			return nil, err
		}
		alone, err := eval.EngineTops(ctx, eng, qUsers, 0, workers)
		if err != nil {
			return nil, err
		}
		with, without := eval.MeanNDCG(withQ, targets), eval.MeanNDCG(alone, targets)
		rep.NDCGWithQuery, rep.NDCGHistoryOnly, rep.NDCGRatio = &with, &without, ratio(with, without)
	}
	rep.Seconds = time.Since(t0).Seconds()
	return rep, nil
}

// measurePrecision fills the category precision figures for the histories hists (item ids).
func (rep *SteeringReport) measurePrecision(ctx context.Context, eng *recommend.Engine, spec *bundle.SteeringSpec, hists [][]string, workers int) error {
	items := eng.Items()
	zero := 0.0
	phrases := make([]string, len(spec.Categories))
	for j, c := range spec.Categories {
		phrases[j] = spec.Phrase([]string{c})
	}
	spoken, note := speakAll(ctx, spec.Voice, phrases)
	if note != "" {
		rep.Notes = append(rep.Notes, note)
	} else {
		rep.Voice = spec.Voice.Name
	}
	lists := func(query string, audio []byte) ([][]int, error) {
		return eval.Lists(ctx, eng, len(hists), workers, func(i int) recommend.Request {
			return recommend.Request{History: hists[i], Query: query, Audio: audio, K: eval.K, ExcludeSeen: true, Alpha: &zero}
		})
	}
	none, err := lists("", nil) // the same lists whichever category is asked for
	if err != nil {
		return err
	}
	var sums [4]float64
	rep.ByCategory = map[string]CategorySteering{}
	for j, c := range spec.Categories {
		in := eval.InCategory(items, c)
		r := CategorySteering{Phrase: phrases[j], None: eval.CategoryPrecision(none, in)}
		typed, err := lists(phrases[j], nil)
		if err != nil {
			return err
		}
		r.Typed = eval.CategoryPrecision(typed, in)
		if spoken != nil {
			said, err := lists("", spoken[j])
			if err != nil {
				return err
			}
			p := eval.CategoryPrecision(said, in)
			r.Spoken = &p
			sums[2] += p
		}
		alone, err := eval.Lists(ctx, eng, 1, 1, func(int) recommend.Request {
			return recommend.Request{Query: phrases[j], K: eval.K, ExcludeSeen: true, Alpha: &zero}
		})
		if err != nil {
			return err
		}
		r.TypedNoHistory = eval.CategoryPrecision(alone, in)
		sums[0], sums[1], sums[3] = sums[0]+r.None, sums[1]+r.Typed, sums[3]+r.TypedNoHistory
		rep.ByCategory[c] = r
	}
	n := float64(len(spec.Categories))
	mean := func(s float64) *float64 { m := s / n; return &m }
	rep.PrecisionNone, rep.PrecisionTyped, rep.PrecisionTypedNoHistory = mean(sums[0]), mean(sums[1]), mean(sums[3])
	if spoken != nil {
		rep.PrecisionSpoken = mean(sums[2])
	}
	return nil
}

// ratio is a/b, nil when b is 0.
func ratio(a, b float64) *float64 {
	if b == 0 {
		return nil
	}
	r := a / b
	return &r
}

// speakAll renders every phrase with espeak-ng in voice v and returns the WAV files' bytes;
// nil and a note saying why when espeak-ng is not on PATH or fails.
func speakAll(ctx context.Context, v bundle.SteeringVoice, phrases []string) ([][]byte, string) {
	bin, err := exec.LookPath("espeak-ng")
	if err != nil {
		return nil, "espeak-ng is not on PATH: spoken requests not measured (install espeak-ng to measure them)"
	}
	dir, err := os.MkdirTemp("", "llm4rec-steering-")
	if err != nil {
		return nil, fmt.Sprintf("spoken requests not measured: %v", err)
	}
	defer os.RemoveAll(dir)
	out := make([][]byte, len(phrases))
	for i, p := range phrases {
		wav := filepath.Join(dir, strconv.Itoa(i)+".wav")
		cctx, cancel := context.WithTimeout(ctx, espeakTimeout)
		msg, err := exec.CommandContext(cctx, bin, "-v", v.Name, "-s", strconv.Itoa(v.Speed), "-p", strconv.Itoa(v.Pitch), "-w", wav, p).CombinedOutput()
		cancel()
		if err == nil {
			out[i], err = os.ReadFile(wav)
		}
		if err != nil {
			return nil, fmt.Sprintf("espeak-ng failed on %q in voice %s: %v %s: spoken requests not measured", p, v.Name, err, strings.TrimSpace(string(msg)))
		}
	}
	return out, ""
}

// exportSteering reads the `steering` section of the bundle's report.json, nil when absent.
// The export does not write ndcg_ratio; it is computed here from its two NDCG figures.
func exportSteering(dir string) *SteeringFigures {
	var rep struct {
		Steering *SteeringFigures `json:"steering"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil || json.Unmarshal(raw, &rep) != nil || rep.Steering == nil {
		return nil
	}
	s := rep.Steering
	if s.NDCGRatio == nil && s.NDCGWithQuery != nil && s.NDCGHistoryOnly != nil {
		s.NDCGRatio = ratio(*s.NDCGWithQuery, *s.NDCGHistoryOnly)
	}
	return s
}

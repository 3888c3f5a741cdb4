package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"time"
)

// Result is the outcome of one scenario: one JSON object.
type Result struct {
	Scenario    string    `json:"scenario"`
	Mode        string    `json:"mode"` // quick or full
	Started     time.Time `json:"started"`
	Seconds     float64   `json:"seconds"`
	Host        Host      `json:"host"`
	Repetitions int       `json:"repetitions"`
	// Relay is the relay process over the whole scenario.
	Relay ProcFigures `json:"relay"`
	// Load is the machine's 1-minute load average at the start and end, and
	// the machine's busy fraction of all cores during the scenario.
	Load Load `json:"load"`
	// Cases are the scenario's measurements, each with min/median/max over
	// the repetitions.
	Cases []Case `json:"cases"`
	// Targets are the targets this scenario measures.
	Targets []Target `json:"targets,omitempty"`
	// Notes say what the figures mean, and what went wrong.
	Notes []string `json:"notes,omitempty"`
	// Profile is the top of a CPU profile of the relay taken during the
	// scenario (go tool pprof -top), where it takes one.
	Profile []string `json:"profile,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// ProcFigures are a process's totals.
type ProcFigures struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	PeakRSS    int64   `json:"peak_rss_bytes"`
	// AllocsPerStanza and BytesPerStanza come from the relay's own metrics
	// (go_memstats_mallocs_total, go_memstats_alloc_bytes_total) over the
	// stanzas it delivered; zero when the scenario delivered none.
	AllocsPerStanza float64 `json:"allocs_per_stanza,omitempty"`
	BytesPerStanza  float64 `json:"bytes_per_stanza,omitempty"`
}

// Load describes how busy the machine was.
type Load struct {
	Start    float64 `json:"loadavg_start"`
	End      float64 `json:"loadavg_end"`
	BusyFrac float64 `json:"busy_fraction"`
}

// Case is one measured configuration of a scenario ("in, 16 streams").
type Case struct {
	Name string `json:"name"`
	// Figures are min/median/max over repetitions, by figure name (units in
	// the name: _us, _ms, _per_s, _bytes, ...).
	Figures map[string]Spread `json:"figures"`
	// Reps are the raw figures of each repetition.
	Reps []map[string]float64 `json:"reps"`
}

// Target is one of the targets and where the run stands.
type Target struct {
	What   string  `json:"what"`
	Target string  `json:"target"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Met    bool    `json:"met"`
	By     string  `json:"by"` // how far from the target, in words
}

// caseSet gathers repetitions into Cases in the order cases first appear.
type caseSet struct {
	order []string
	reps  map[string][]map[string]float64
}

func (cs *caseSet) add(name string, figs map[string]float64) {
	if cs.reps == nil {
		cs.reps = map[string][]map[string]float64{}
	}
	if _, ok := cs.reps[name]; !ok {
		cs.order = append(cs.order, name)
	}
	clean := make(map[string]float64, len(figs))
	for k, v := range figs {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			clean[k] = round3(v)
		}
	}
	cs.reps[name] = append(cs.reps[name], clean)
}

func (cs *caseSet) cases() []Case {
	var out []Case
	for _, name := range cs.order {
		reps := cs.reps[name]
		keys := map[string]bool{}
		for _, r := range reps {
			for k := range r {
				keys[k] = true
			}
		}
		c := Case{Name: name, Figures: map[string]Spread{}, Reps: reps}
		for k := range keys {
			var vals []float64
			for _, r := range reps {
				if v, ok := r[k]; ok {
					vals = append(vals, v)
				}
			}
			c.Figures[k] = SpreadOf(vals)
		}
		out = append(out, c)
	}
	return out
}

// Find returns the case named name, or nil.
func (r *Result) Find(name string) *Case {
	for i := range r.Cases {
		if r.Cases[i].Name == name {
			return &r.Cases[i]
		}
	}
	return nil
}

// Median returns the median of figure in case, or NaN.
func (r *Result) Median(name, figure string) float64 {
	c := r.Find(name)
	if c == nil {
		return math.NaN()
	}
	s, ok := c.Figures[figure]
	if !ok || s.N == 0 {
		return math.NaN()
	}
	return s.Median
}

// target adds a target check: lower is better when atMost.
func (r *Result) target(what, target string, value float64, unit string, limit float64, atMost bool) {
	t := Target{What: what, Target: target, Value: round3(value), Unit: unit}
	if math.IsNaN(value) || math.IsInf(value, 0) {
		t.Value = 0 // JSON has no NaN
		t.By = "not measured"
		r.Targets = append(r.Targets, t)
		return
	}
	if atMost {
		t.Met = value <= limit
	} else {
		t.Met = value >= limit
	}
	switch {
	case t.Met:
		t.By = "met"
	case limit != 0 && value != 0:
		f := value / limit
		if !atMost {
			f = limit / value
		}
		t.By = fmt.Sprintf("missed: %.2f× the target", f)
	default:
		t.By = "missed"
	}
	r.Targets = append(r.Targets, t)
}

// WriteJSON writes results as one JSON object per line.
func WriteJSON(w io.Writer, results []*Result) error {
	enc := json.NewEncoder(w)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// ReadJSON reads what WriteJSON wrote.
func ReadJSON(rd io.Reader) ([]*Result, error) {
	dec := json.NewDecoder(rd)
	var out []*Result
	for dec.More() {
		r := new(Result)
		if err := dec.Decode(r); err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// figureNames returns the figure names of cases, sorted.
func figureNames(cases []Case) []string {
	seen := map[string]bool{}
	for _, c := range cases {
		for k := range c.Figures {
			seen[k] = true
		}
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

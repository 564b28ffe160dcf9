// Command junitcompare puts two runs of `hack/conformance.sh run` side by side, per spec: berth's
// and the reference runtime's (containerd's) outcome, the counts of each, and first the specs
// that pass on the reference and fail on berth (the goal is that there are none).
//
//	junitcompare -a BERTH_DIR -b CONTAINERD_DIR [-out FILE]
//
// A run's directory (--report-dir) holds selected/junit_01.xml (the dry run with the focus
// alone), junit_01.xml (the run), and as hack/conformance.sh writes them: runtime (its name),
// skip (the --ginkgo.skip it ran with) and seconds (the suite's wall time). It prints the
// counts; -out writes the whole comparison as Markdown.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"berth.local/conformancebuild/junit"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "junitcompare:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("junitcompare", flag.ContinueOnError)
	a := fs.String("a", "", "berth's report dir")
	b := fs.String("b", "", "the reference runtime's report dir")
	out := fs.String("out", "", "write the comparison (Markdown) here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *a == "" || *b == "" {
		return errors.New("-a and -b are both needed")
	}
	ra, err := load(*a, "a")
	if err != nil {
		return err
	}
	rb, err := load(*b, "b")
	if err != nil {
		return err
	}
	c := compare(ra, rb)
	fmt.Fprint(stdout, c.counts())
	if *out == "" {
		return nil
	}
	if err := os.WriteFile(*out, []byte(c.markdown()), 0o644); err != nil {
		return fmt.Errorf("write comparison: %w", err)
	}
	return nil
}

// runResult is one run: its runtime's name, wall time and each selected spec's outcome.
type runResult struct {
	name    string
	seconds string
	sum     junit.Summary
}

func load(dir, fallback string) (runResult, error) {
	r := runResult{name: readLine(dir, "runtime", fallback), seconds: readLine(dir, "seconds", "")}
	sel, err := junit.Read(filepath.Join(dir, "selected", "junit_01.xml"))
	if err != nil {
		return r, fmt.Errorf("run %s: %w", dir, err)
	}
	got, err := junit.Read(filepath.Join(dir, "junit_01.xml"))
	if err != nil {
		return r, fmt.Errorf("run %s: %w", dir, err)
	}
	var skip *regexp.Regexp
	if s := readLine(dir, "skip", ""); s != "" {
		if skip, err = regexp.Compile(s); err != nil {
			return r, fmt.Errorf("run %s: skip regex: %w", dir, err)
		}
	}
	r.sum = junit.Summarize(sel, got, skip)
	return r, nil
}

// readLine is a one-line file of the run dir, or def when it is absent.
func readLine(dir, name, def string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return def
	}
	return strings.TrimSpace(string(b))
}

// outcome of one spec in one run.
type outcome struct {
	state  string // passed, failed, skipped, absent (not selected by this run's focus)
	detail string // the failure's first line or why it was skipped
}

func (r runResult) outcome(name string) outcome {
	if m, ok := r.sum.Failed[name]; ok {
		return outcome{"failed", m}
	}
	if m, ok := r.sum.Skipped[name]; ok {
		return outcome{"skipped", m}
	}
	for _, p := range r.sum.Passed {
		if p == name {
			return outcome{"passed", ""}
		}
	}
	return outcome{"absent", "not selected in this run"}
}

type row struct {
	name string
	a, b outcome
}

type comparison struct {
	a, b runResult
	rows []row // every spec either run selected, by name
}

func compare(a, b runResult) comparison {
	names := map[string]bool{}
	for _, r := range []runResult{a, b} {
		for _, n := range r.sum.Passed {
			names[n] = true
		}
		for n := range r.sum.Failed {
			names[n] = true
		}
		for n := range r.sum.Skipped {
			names[n] = true
		}
	}
	c := comparison{a: a, b: b}
	for n := range names {
		c.rows = append(c.rows, row{name: n, a: a.outcome(n), b: b.outcome(n)})
	}
	sort.Slice(c.rows, func(i, j int) bool { return c.rows[i].name < c.rows[j].name })
	return c
}

func (c comparison) counts() string {
	line := func(r runResult) string {
		return fmt.Sprintf("%s: %d passed, %d failed, %d skipped\n", r.name, len(r.sum.Passed), len(r.sum.Failed), len(r.sum.Skipped))
	}
	return line(c.a) + line(c.b) + fmt.Sprintf("passed on %s, failed on %s: %d\n", c.b.name, c.a.name, len(c.where("passed", "failed")))
}

// where lists the rows whose outcome on b is sb and on a is sa.
func (c comparison) where(sb, sa string) []row {
	var out []row
	for _, r := range c.rows {
		if r.b.state == sb && r.a.state == sa {
			out = append(out, r)
		}
	}
	return out
}

func (c comparison) markdown() string {
	var w strings.Builder
	an, bn := c.a.name, c.b.name
	fmt.Fprintf(&w, "| | %s | %s |\n|---|---|---|\n", an, bn)
	fmt.Fprintf(&w, "| passed | %d | %d |\n", len(c.a.sum.Passed), len(c.b.sum.Passed))
	fmt.Fprintf(&w, "| failed | %d | %d |\n", len(c.a.sum.Failed), len(c.b.sum.Failed))
	fmt.Fprintf(&w, "| skipped or not reached | %d | %d |\n", len(c.a.sum.Skipped), len(c.b.sum.Skipped))
	if c.a.seconds != "" || c.b.seconds != "" {
		fmt.Fprintf(&w, "| suite wall time (s) | %s | %s |\n", c.a.seconds, c.b.seconds)
	}
	section := func(title string, rows []row, detail func(row) string) {
		fmt.Fprintf(&w, "\n### %s (%d)\n\n", title, len(rows))
		for _, r := range rows {
			fmt.Fprintf(&w, "- %s\n", r.name)
			if d := detail(r); d != "" {
				fmt.Fprintf(&w, "  %s\n", d)
			}
		}
	}
	on := func(name string, o outcome) string { return name + ": " + o.detail }
	section(fmt.Sprintf("Passed on %s, failed on %s", bn, an), c.where("passed", "failed"),
		func(r row) string { return on(an, r.a) })
	section(fmt.Sprintf("Passed on %s, failed on %s", an, bn), c.where("failed", "passed"),
		func(r row) string { return on(bn, r.b) })
	section("Failed on both", c.where("failed", "failed"),
		func(r row) string { return on(an, r.a) + "; " + on(bn, r.b) })
	var once []row
	for _, r := range c.rows {
		if (r.a.state == "skipped") != (r.b.state == "skipped") || (r.a.state == "absent") != (r.b.state == "absent") {
			once = append(once, r)
		}
	}
	section("Run on one runtime only", once, func(r row) string {
		return fmt.Sprintf("%s: %s; %s: %s", an, brief(r.a), bn, brief(r.b))
	})
	fmt.Fprintf(&w, "\n### Every spec\n\n| spec | %s | %s |\n|---|---|---|\n", an, bn)
	for _, r := range c.rows {
		fmt.Fprintf(&w, "| %s | %s | %s |\n", strings.ReplaceAll(strings.TrimPrefix(r.name, "[It] "), "|", `\|`), r.a.state, r.b.state)
	}
	return w.String()
}

func brief(o outcome) string {
	if o.state == "passed" {
		return o.state
	}
	return o.state + " (" + o.detail + ")"
}
